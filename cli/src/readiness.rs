//! `ec2-forensics readiness`: the account's readiness for an incident, as
//! a table (or JSON), and `--fix allowed-amis`.

use std::process::ExitCode;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, ContentArrangement, Table};
use playbook::case::text;
use playbook::steps::readiness::{self, Readiness, Regions, Verdict};
use playbook::{PlaybookError, Responder};

/// What `--fix` can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fix {
    /// EC2's Allowed AMIs criteria from the policy's approvedImages, in
    /// audit mode (launches logged, never refused).
    AllowedAmis,
}

/// Runs the checks (or the fix) and prints them: exit 0 only when no check
/// fails, 1 when one does, 2 when the checks could not run.
pub async fn run(region: Option<String>, regions: &str, json: bool, fix: Option<Fix>) -> ExitCode {
    let outcome = async {
        let regions = Regions::parse(regions)?;
        let responder = Responder::load(region).await?;
        if let Some(Fix::AllowedAmis) = fix {
            let fixed = readiness::fix_allowed_images(&responder).await?;
            return Ok(Err(fixed));
        }
        Ok::<_, PlaybookError>(Ok(readiness::assess(&responder, &regions).await?))
    }
    .await;
    crate::exit_code(outcome.map(|done| match done {
        Ok(readiness) => {
            if json {
                let shown = serde_json::to_string_pretty(&readiness).unwrap_or_default();
                println!("{}", text::json_for_terminal(&shown));
            } else {
                println!("{}", table(&readiness));
                println!(
                    "{}: {} failed, {} warned, {} passed (account {}, {} Region(s))",
                    if readiness.ready() {
                        "ready"
                    } else {
                        "not ready"
                    },
                    readiness.failed,
                    readiness.warned,
                    readiness.passed,
                    text::plain(&readiness.account),
                    readiness.regions.len()
                );
            }
            readiness.ready()
        }
        Err(fixed) => {
            let shown = serde_json::to_string_pretty(&fixed).unwrap_or_default();
            println!("{}", text::json_for_terminal(&shown));
            true
        }
    }))
}

/// The checks as a table: every text cell made plain (a trail or bucket
/// name is the account's, not ours, and never reaches the terminal as
/// control characters).
pub fn table(readiness: &Readiness) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["check", "region", "verdict", "found", "fix"]);
    for check in &readiness.checks {
        let verdict = match check.verdict {
            Verdict::Pass => "pass",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        table.add_row([
            Cell::new(text::plain(&check.check)),
            Cell::new(text::plain(check.region.as_deref().unwrap_or("-"))),
            Cell::new(verdict),
            Cell::new(text::plain(&check.found)),
            Cell::new(text::plain(&check.fix)),
        ]);
    }
    table
}
