//! `motherstream nginx-hooks`: the hook directives, with the secret, for an
//! nginx include file readable by root only (the packaged nginx example
//! includes /etc/motherstream/nginx-hooks.conf in both applications).

use std::process::ExitCode;

use motherstream::auth;

use super::{act_as_state_owner, cli_state_dir, failed, load_config, local_authority};
use crate::Args;

pub fn run(args: &Args) -> ExitCode {
    let cfg = match load_config(args) {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let dir = cli_state_dir(&cfg);
    if let Err(e) = act_as_state_owner(&dir) {
        return failed(e);
    }
    let path = auth::hook_secret_path(&cfg, &dir);
    let secret = match auth::load_or_create(&path, false) {
        Ok((s, _)) => s,
        Err(e) => {
            return failed(format!(
                "{e} (the daemon creates it at its first start, the .deb at install)"
            ))
        }
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
