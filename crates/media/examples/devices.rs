//! Lists what the device manager sees (microphones, speakers, cameras, screens) and
//! captures one frame of each screen: `cargo run -p confer-media --example devices`.

use confer_media::devices::DeviceManager;
use confer_media::video::screen;

fn main() {
    let manager = DeviceManager::new();
    let devices = manager.devices();
    println!("{}", serde_json::to_string_pretty(&devices).unwrap_or_default());
    match screen::list() {
        Ok(screens) => {
            for s in screens {
                let frame = screen::capture(s.source).map(|f| format!("{}x{}", f.width, f.height));
                println!("{:?} {:?} {}x{}: captured {:?}", s.source, s.name, s.width, s.height, frame);
            }
        }
        Err(e) => println!("screens: {e}"),
    }
    // A second of the first screen at 10 fps, to see capture keep going.
    if let Ok(capture) = screen::ScreenCapture::start(screen::ScreenSource::Monitor(0), 10) {
        let n = (0..10).filter_map(|_| capture.next_frame(std::time::Duration::from_millis(500))).count();
        println!("first screen: {n} of 10 frames in a second");
    }
}
