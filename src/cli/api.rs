//! `motherstream api METHOD PATH [JSON]`: one admin call with the token the
//! daemon uses (read from its file), the answer on stdout.

use std::process::ExitCode;

use motherstream::auth;

use super::{failed, local_authority, state_secret};
use crate::{Args, USAGE};

pub fn run(args: &Args) -> ExitCode {
    let (method, path, body) = match args.rest.as_slice() {
        [m, p] => (m.to_ascii_uppercase(), p.clone(), None),
        [m, p, b] => (m.to_ascii_uppercase(), p.clone(), Some(b.clone())),
        _ => {
            eprintln!("motherstream: api takes METHOD PATH [JSON]\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !["GET", "POST", "DELETE"].contains(&method.as_str()) || !path.starts_with('/') {
        eprintln!("motherstream: api takes GET, POST or DELETE and a path starting with /");
        return ExitCode::from(2);
    }
    let (cfg, _, token) = match state_secret(
        args,
        auth::admin_token_path,
        "the daemon creates it at its first start; run this as root or as the motherstream user",
    ) {
        Ok(t) => t,
        Err(e) => return failed(e),
    };
    let url = format!("http://{}{path}", local_authority(&cfg.http.listen));
    call(&url, &method, &token, body.as_deref())
}

/// The request, its answer's body on stdout; success for a 2xx.
fn call(url: &str, method: &str, token: &str, body: Option<&str>) -> ExitCode {
    let agent = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(10))
        .redirects(0)
        .build();
    let req = agent
        .request(method, url)
        .set("Authorization", &format!("Bearer {token}"));
    let result = if method == "GET" {
        req.call()
    } else {
        req.set("Content-Type", "application/json")
            .send_string(body.unwrap_or("{}"))
    };
    let (ok, resp) = match result {
        Ok(r) => (true, r),
        Err(ureq::Error::Status(_, r)) => (false, r),
        Err(e) => return failed(format!("cannot reach the daemon at {url}: {e}")),
    };
    let status = resp.status();
    match resp.into_string() {
        Ok(text) => println!("{}", text.trim_end()),
        Err(e) => return failed(format!("cannot read the answer: {e}")),
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("motherstream: HTTP {status}");
        ExitCode::from(1)
    }
}
