//! `ec2-forensics investigate`: the playbook in-process, progress on stderr
//! (progress bars when stderr is a terminal, plain lines otherwise), the Case
//! on stdout or in a file.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use playbook::steps::investigate::{investigate, not_done, Investigation, Progress, Stage};
use playbook::PlaybookError;

/// The command's arguments.
pub struct Request {
    pub instance: String,
    pub region: Option<String>,
    pub reason: String,
    pub until: String,
    pub policy: Option<PathBuf>,
    pub poll_seconds: u64,
    pub max_checks: u32,
}

/// Plain progress lines, for logs and pipes.
struct Lines {
    last: Mutex<BTreeMap<String, String>>,
}

impl Progress for Lines {
    fn step(&self, step: &str, detail: &str) {
        eprintln!("[{step}] {detail}");
    }

    fn snapshot(&self, snapshot_id: &str, label: &str, percent: u64, state: &str) {
        let line = format!("{state} {percent}%");
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.get(snapshot_id) != Some(&line) {
            eprintln!("  {snapshot_id} ({label}): {line}");
            last.insert(snapshot_id.to_owned(), line);
        }
    }
}

/// One progress bar per snapshot and copy, for a terminal.
struct Bars {
    all: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Progress for Bars {
    fn step(&self, step: &str, detail: &str) {
        let _ = self.all.println(format!("[{step}] {detail}"));
    }

    fn snapshot(&self, snapshot_id: &str, label: &str, percent: u64, state: &str) {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bars.entry(snapshot_id.to_owned()).or_insert_with(|| {
            let bar = self.all.add(ProgressBar::new(100));
            let style = ProgressStyle::with_template("  {prefix} [{bar:30}] {pos:>3}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(format!("{snapshot_id} ({label})"));
            bar
        });
        bar.set_position(percent);
        bar.set_message(state.to_owned());
        if state == "completed" || state == "error" {
            bar.finish();
        }
    }
}

/// Runs the investigation and writes the Case.
pub async fn run(request: Request, out: Option<&Path>) -> ExitCode {
    super::exit_code(investigate_and_write(request, out).await.map(|missing| {
        if !missing.is_empty() {
            eprintln!("ec2-forensics: not everything asked was done:");
            for line in &missing {
                eprintln!("  - {line}");
            }
        }
        missing.is_empty()
    }))
}

async fn investigate_and_write(
    request: Request,
    out: Option<&Path>,
) -> Result<Vec<String>, PlaybookError> {
    let until: Stage = request.until.parse()?;
    let policy = match &request.policy {
        Some(path) => Some(super::load_policy(Some(path))?),
        None => None,
    };
    let investigation = Investigation {
        region: request.region,
        instance_id: request.instance,
        reason: request.reason,
        until,
        policy,
        poll_interval: Duration::from_secs(request.poll_seconds),
        max_checks: request.max_checks,
    };
    let case = if std::io::stderr().is_terminal() {
        let bars = Bars {
            all: MultiProgress::new(),
            bars: Mutex::new(BTreeMap::new()),
        };
        investigate(investigation, &bars).await?
    } else {
        let lines = Lines {
            last: Mutex::new(BTreeMap::new()),
        };
        investigate(investigation, &lines).await?
    };
    let json = serde_json::to_string_pretty(&case)?;
    match out {
        Some(path) => std::fs::write(path, json + "\n").map_err(|e| {
            PlaybookError::Configuration(format!("cannot write {}: {e}", path.display()))
        })?,
        None => println!("{json}"),
    }
    Ok(not_done(&case, until))
}
