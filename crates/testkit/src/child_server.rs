//! A server on another stack (Python's, C++'s) run as a child process for a test: it prints
//! `listening PORT` on its first line once bound, and is killed when this is dropped.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct ChildServer {
    pub port: u16,
    _child: Child,
}

impl ChildServer {
    /// Starts `cmd` and waits for its port; `what` names it when it fails to start.
    #[expect(clippy::expect_used, clippy::panic)]
    pub async fn start(mut cmd: Command, what: &str) -> ChildServer {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{what} cannot start: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .await
            .expect("the server's first line");
        let port = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "{what} said {line:?} instead of its port (exit: {:?})",
                    child.try_wait()
                )
            });
        ChildServer {
            port,
            _child: child,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
