/**
 * Video tiles: decoded frames arrive from the Rust side as binary WebSocket messages
 * (never JSON events) and are drawn with WebGL, I420 to RGB in a shader, or with
 * Canvas2D where WebGL is missing.
 *
 * One socket per tile, flow-controlled by the view: it asks for the next frame ("next")
 * as soon as one arrives, so one is always on its way, and draws the newest it holds
 * at the next animation frame. The server always sends the newest frame, so a busy
 * view skips frames instead of falling behind.
 *
 * Wire format (little-endian): "CFv1", width u32, height u32, seq u64, capture ms u64,
 * then the Y, U and V planes.
 */

import type { FrameEndpoint } from "./bindings";

export interface TileStats {
  /** Frames that reached the view. */
  received: number;
  /** Frames drawn (a frame that arrives before the last one was drawn replaces it). */
  frames: number;
  latencies: number[];
  width: number;
  height: number;
}

const HEADER = 28;

interface Renderer {
  readonly name: string;
  draw(width: number, height: number, y: Uint8Array, u: Uint8Array, v: Uint8Array): void;
}

export class TileView {
  readonly stats: TileStats = { received: 0, frames: 0, latencies: [], width: 0, height: 0 };
  private socket: WebSocket;
  private renderer: Renderer;
  private closed = false;
  /** The newest frame not drawn yet. */
  private pending: ArrayBuffer | null = null;

  constructor(
    readonly canvas: HTMLCanvasElement,
    endpoint: FrameEndpoint,
    readonly tile: string,
  ) {
    this.renderer = WebGlRenderer.create(canvas) ?? new Canvas2dRenderer(canvas);
    this.url = `${endpoint.base}/frames/${encodeURIComponent(tile)}?key=${endpoint.key}`;
    this.socket = this.open();
  }

  private readonly url: string;

  /** Connects; a tile that ends (its track stopped) is watched again, as it may return. */
  private open(): WebSocket {
    const socket = new WebSocket(this.url);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => socket.send("next");
    socket.onmessage = (event) => this.onFrame(event.data as ArrayBuffer);
    socket.onclose = () => {
      if (!this.closed) setTimeout(() => {
        if (!this.closed) this.socket = this.open();
      }, 300);
    };
    return socket;
  }

  get rendererName(): string {
    return this.renderer.name;
  }

  close(): void {
    this.closed = true;
    this.socket.close();
  }

  private onFrame(data: ArrayBuffer): void {
    this.stats.received += 1;
    const scheduled = this.pending !== null;
    this.pending = data;
    if (!this.closed) this.socket.send("next");
    if (!scheduled) requestAnimationFrame(() => this.drawPending());
  }

  private drawPending(): void {
    const data = this.pending;
    this.pending = null;
    if (!data || data.byteLength < HEADER) return;
    const view = new DataView(data);
    const magic = String.fromCharCode(...new Uint8Array(data, 0, 4));
    if (magic !== "CFv1") return;
    const width = view.getUint32(4, true);
    const height = view.getUint32(8, true);
    const seq = view.getBigUint64(12, true);
    const captureMs = Number(view.getBigUint64(20, true));
    const cw = Math.ceil(width / 2);
    const ch = Math.ceil(height / 2);
    const y = new Uint8Array(data, HEADER, width * height);
    const u = new Uint8Array(data, HEADER + width * height, cw * ch);
    const v = new Uint8Array(data, HEADER + width * height + cw * ch, cw * ch);
    this.renderer.draw(width, height, y, u, v);
    this.stats.frames += 1;
    // For tests and for people inspecting the view: how many frames this canvas drew.
    if (this.stats.frames % 10 === 1) this.canvas.dataset.frames = String(this.stats.frames);
    // And how many the app decoded for this tile so far (the frame's sequence number).
    this.canvas.dataset.decoded = String(seq);
    this.stats.width = width;
    this.stats.height = height;
    if (captureMs > 0) this.stats.latencies.push(Date.now() - captureMs);
  }
}

const VERTEX = `
attribute vec2 pos;
varying vec2 uv;
void main() {
  uv = vec2((pos.x + 1.0) / 2.0, (1.0 - pos.y) / 2.0);
  gl_Position = vec4(pos, 0.0, 1.0);
}`;

// BT.601 limited range, as the encoders and the capture conversions use.
const FRAGMENT = `
precision mediump float;
varying vec2 uv;
uniform sampler2D ty;
uniform sampler2D tu;
uniform sampler2D tv;
void main() {
  float y = 1.1643 * (texture2D(ty, uv).r - 0.0625);
  float u = texture2D(tu, uv).r - 0.5;
  float v = texture2D(tv, uv).r - 0.5;
  gl_FragColor = vec4(y + 1.596 * v, y - 0.391 * u - 0.813 * v, y + 2.018 * u, 1.0);
}`;

class WebGlRenderer implements Renderer {
  readonly name = "webgl";
  private textures: WebGLTexture[] = [];

  private constructor(
    private canvas: HTMLCanvasElement,
    private gl: WebGLRenderingContext,
  ) {
    const program = gl.createProgram();
    for (const [type, source] of [
      [gl.VERTEX_SHADER, VERTEX],
      [gl.FRAGMENT_SHADER, FRAGMENT],
    ] as const) {
      const shader = gl.createShader(type);
      if (!shader || !program) throw new Error("webgl: no shader");
      gl.shaderSource(shader, source);
      gl.compileShader(shader);
      gl.attachShader(program, shader);
    }
    gl.linkProgram(program);
    gl.useProgram(program);
    const buffer = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
    const pos = gl.getAttribLocation(program!, "pos");
    gl.enableVertexAttribArray(pos);
    gl.vertexAttribPointer(pos, 2, gl.FLOAT, false, 0, 0);
    ["ty", "tu", "tv"].forEach((name, i) => {
      const texture = gl.createTexture()!;
      gl.activeTexture(gl.TEXTURE0 + i);
      gl.bindTexture(gl.TEXTURE_2D, texture);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.LINEAR);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
      gl.uniform1i(gl.getUniformLocation(program!, name), i);
      this.textures.push(texture);
    });
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
  }

  static create(canvas: HTMLCanvasElement): WebGlRenderer | null {
    try {
      const gl = canvas.getContext("webgl", { alpha: false, antialias: false });
      return gl ? new WebGlRenderer(canvas, gl) : null;
    } catch (e) {
      console.warn("WebGL unavailable, drawing with Canvas2D", e);
      return null;
    }
  }

  draw(width: number, height: number, y: Uint8Array, u: Uint8Array, v: Uint8Array): void {
    const gl = this.gl;
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
      gl.viewport(0, 0, width, height);
    }
    const planes: [Uint8Array, number, number][] = [
      [y, width, height],
      [u, Math.ceil(width / 2), Math.ceil(height / 2)],
      [v, Math.ceil(width / 2), Math.ceil(height / 2)],
    ];
    planes.forEach(([data, w, h], i) => {
      gl.activeTexture(gl.TEXTURE0 + i);
      gl.bindTexture(gl.TEXTURE_2D, this.textures[i]);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.LUMINANCE, w, h, 0, gl.LUMINANCE, gl.UNSIGNED_BYTE, data);
    });
    gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
  }
}

/** I420 to RGBA in script: slower, for web views without WebGL. */
class Canvas2dRenderer implements Renderer {
  readonly name = "canvas2d";
  private context: CanvasRenderingContext2D | null;
  private image: ImageData | null = null;

  constructor(private canvas: HTMLCanvasElement) {
    this.context = canvas.getContext("2d");
  }

  draw(width: number, height: number, y: Uint8Array, u: Uint8Array, v: Uint8Array): void {
    if (!this.context) return;
    if (!this.image || this.image.width !== width || this.image.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
      this.image = this.context.createImageData(width, height);
    }
    const out = this.image.data;
    const cw = Math.ceil(width / 2);
    for (let row = 0; row < height; row++) {
      const crow = (row >> 1) * cw;
      for (let col = 0; col < width; col++) {
        const l = 1.1643 * (y[row * width + col] - 16);
        const cu = u[crow + (col >> 1)] - 128;
        const cv = v[crow + (col >> 1)] - 128;
        const o = (row * width + col) * 4;
        out[o] = l + 1.596 * cv;
        out[o + 1] = l - 0.391 * cu - 0.813 * cv;
        out[o + 2] = l + 2.018 * cu;
        out[o + 3] = 255;
      }
    }
    this.context.putImageData(this.image, 0, 0);
  }
}
