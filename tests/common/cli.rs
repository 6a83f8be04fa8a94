//! `natter client` as a script runs it.

/// Runs `natter client` against `server` with its own configuration
/// directory, the password (if any) in NATTER_PASSWORD and no terminal.
pub struct Cli {
    pub server: String,
    pub config: tempfile::TempDir,
}

impl Cli {
    pub fn new(server: &str) -> Cli {
        Cli {
            server: server.to_owned(),
            config: tempfile::tempdir().unwrap(),
        }
    }

    pub fn command(&self, password: Option<&str>, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_natter"));
        cmd.args(["client", "--server", &self.server])
            .args(args)
            .env("NATTER_CONFIG_DIR", self.config.path())
            .env_remove("NATTER_SERVER")
            .env_remove("NATTER_PASSWORD")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(p) = password {
            cmd.env("NATTER_PASSWORD", p);
        }
        cmd
    }

    pub async fn run(&self, password: Option<&str>, args: &[&str]) -> std::process::Output {
        self.command(password, args).output().await.unwrap()
    }

    /// Runs and fails the test on a non-zero exit; returns stdout.
    pub async fn ok(&self, password: Option<&str>, args: &[&str]) -> String {
        let out = self.run(password, args).await;
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}
