//! `motherstream nginx-hooks`: the hook directives, with the secret, for an
//! nginx include file readable by root only (the packaged nginx example
//! includes /etc/motherstream/nginx-hooks.conf in both applications).

use std::process::ExitCode;

use motherstream::auth;

use super::{failed, local_authority, state_secret};
use crate::Args;

pub fn run(args: &Args) -> ExitCode {
    let (cfg, path, secret) = match state_secret(
        args,
        auth::hook_secret_path,
        "the daemon creates it at its first start, the .deb at install",
    ) {
        Ok(t) => t,
        Err(e) => return failed(e),
    };
    let base = format!(
        "http://{}{}{secret}",
        local_authority(&cfg.http.listen),
        auth::HOOK_PREFIX
    );
    println!(
        "# motherstream hook URLs, written by `motherstream nginx-hooks`.\n\
         # They hold the hook secret ({}): keep this file readable by root only.",
        path.display()
    );
    for hook in ["on_publish", "on_publish_done", "on_play", "on_record_done"] {
        println!("{hook} {base}/{hook};");
    }
    ExitCode::SUCCESS
}
