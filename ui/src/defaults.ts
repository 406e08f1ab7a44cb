/** Default media settings, shared by the settings (`settings.ts`) and the web engine
 * (which cannot import `settings.ts`: that imports the engine). */

import type { MediaSettings_Serialize as MediaSettings } from "./bindings";

export const DEFAULT_MEDIA: MediaSettings = {
  microphone: null,
  speaker: null,
  camera: null,
  echo_cancellation: true,
  noise_suppression: true,
  gain_control: true,
  video_quality: "standard",
  start_muted: false,
  start_camera_off: false,
  audio_only: false,
  force_relay: false,
};
