//! `confer-cli`: the room API from the command line, and headless bots.
//!
//! [`run`] executes a parsed [`args::Cli`] and returns the process exit status; errors
//! that end the program come back as [`CliError`], which [`report`] turns into what goes
//! on stderr. The binary (`main.rs`) only wires these to the process.

pub mod admin;
pub use confer_client::api;
pub mod args;
pub mod bot;
pub mod endpoint;
pub mod host;
pub mod load;
pub mod media;
pub mod output;

use std::io::Write;

use serde_json::{json, Value};

use crate::api::{ApiClient, ApiError};
use crate::args::{Cli, Command};
use crate::endpoint::UrlError;

const USER_AGENT: &str = concat!("confer-cli/", env!("CARGO_PKG_VERSION"));
use crate::output::JsonLines;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Load(#[from] load::LoadError),
    #[error(transparent)]
    Api(ApiError),
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs one command, writing its output to `out`. Returns the exit status.
pub async fn run(cli: Cli, out: &mut JsonLines<impl Write>) -> Result<u8, CliError> {
    let Cli { url, api_key, api_secret, command } = cli;
    if let Command::Bot(args) = command {
        // The SDK normalizes the URL itself (http or ws, with or without the path).
        return Ok(bot::run(&url, *args, out).await?.code());
    }
    if let Command::Devices(args) = command {
        return Ok(devices(&args, out)?);
    }
    let api = ApiClient::new(endpoint::api_base(&url)?, api_key, api_secret, USER_AGENT)?;
    match command {
        Command::Room(c) => admin::room(&api, c, out).await?,
        Command::Token(c) => admin::token(&api, c, out).await?,
        Command::Invite(c) => admin::invite(&api, c, out).await?,
        Command::Session(c) => admin::session(&api, c, out).await?,
        Command::Load(args) => {
            let json = args.json;
            let summary = load::run(&api, &url, args).await.map_err(|e| match e {
                load::LoadError::Api(e) => CliError::Api(e),
                other => CliError::Load(other),
            })?;
            if json {
                out.emit(&summary)?;
            } else {
                out.line(summary.table().trim_end())?;
            }
            return Ok(u8::from(summary.failures > 0));
        }
        Command::Bot(_) | Command::Devices(_) => unreachable!("handled above"),
    }
    Ok(0)
}

/// `devices`: the device manager's view, with screens; or one interface sound.
fn devices(args: &args::DevicesArgs, out: &mut JsonLines<impl Write>) -> std::io::Result<u8> {
    use confer_media::audio::{Sound, UiSounds};
    if let Some(play) = args.play {
        let sound = match play {
            args::SoundArg::Joined => Sound::Joined,
            args::SoundArg::Left => Sound::Left,
            args::SoundArg::Message => Sound::Message,
        };
        let sounds = UiSounds::new(args.speaker.parse().unwrap_or_default());
        sounds.play(sound);
        // The sound is two notes of 90 ms, but a fresh PulseAudio stream takes up to a
        // second to start: let it start and finish.
        std::thread::sleep(std::time::Duration::from_millis(2000));
        out.emit(&json!({"played": format!("{play:?}").to_lowercase(), "speaker": args.speaker}))?;
        return Ok(0);
    }
    let devices = confer_media::devices::DeviceManager::new().devices();
    let screens = confer_media::video::screen::list().unwrap_or_default();
    out.emit(&json!({
        "microphones": devices.microphones,
        "speakers": devices.speakers,
        "cameras": devices.cameras,
        "screens": screens,
    }))?;
    Ok(0)
}

/// What to print on stderr for `error`: the error as a `{code,name,message}` JSON line
/// (the server's own body when it refused; `code` null otherwise), and a one-line
/// message for people.
pub fn report(error: &CliError) -> (Value, String) {
    let local = |name: &str| json!({"code": null, "name": name, "message": error.to_string()});
    match error {
        CliError::Api(ApiError::Refused { status, body }) => (
            json!(body),
            format!(
                "confer-cli: the server refused (HTTP {status}): {} [{} {}]",
                body.message,
                body.name,
                body.code.number()
            ),
        ),
        CliError::Api(ApiError::MissingCredentials) => (local("missing_credentials"), format!("confer-cli: {error}")),
        CliError::Api(ApiError::Http(_)) => (local("http"), format!("confer-cli: {error}")),
        CliError::Api(ApiError::Unexpected { .. }) => (local("unexpected_answer"), format!("confer-cli: {error}")),
        CliError::Api(ApiError::Json(_)) => (local("json"), format!("confer-cli: {error}")),
        CliError::Url(_) => (local("invalid_url"), format!("confer-cli: {error}")),
        CliError::Output(_) => (local("output"), format!("confer-cli: {error}")),
        CliError::Load(_) => (local("load"), format!("confer-cli: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confer_proto::{ErrorBody, ErrorCode};

    #[test]
    fn refusals_are_reported_with_the_servers_body() {
        let error = CliError::Api(ApiError::Refused { status: 404, body: ErrorBody::from(ErrorCode::RoomNotFound) });
        let (json, line) = report(&error);
        assert_eq!(json["code"], 3000);
        assert_eq!(json["name"], "room_not_found");
        assert!(line.contains("room not found") && line.contains("404"), "{line}");
        assert!(!line.contains('\n'));

        let (json, _) = report(&CliError::Api(ApiError::MissingCredentials));
        assert_eq!((json["code"].clone(), json["name"].as_str()), (Value::Null, Some("missing_credentials")));
    }
}
