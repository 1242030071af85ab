//! Progress events and the chat/terminal text for each.
//!
//! The runner emits [`AntonMessage`]s through a [`MessageSink`]: plain log lines (what `anton
//! run` prints) and structured [`ProgressEvent`]s (what `/anton` pushes to the chat, formatted
//! with [`format_progress_message`]).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::tasks::base_name;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "phase",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ProgressEvent {
    Start {
        task_file: PathBuf,
        total_tasks: usize,
    },
    TaskStart {
        index: usize,
        total: usize,
        task: String,
    },
    DiscoveryStart {
        index: usize,
        total: usize,
        task: String,
    },
    DiscoveryComplete {
        index: usize,
        total: usize,
        task: String,
        plan_file: PathBuf,
    },
    DiscoveryFailed {
        index: usize,
        total: usize,
        task: String,
        error: String,
    },
    DiscoveryAlreadyComplete {
        index: usize,
        total: usize,
        task: String,
    },
    ReviewStart {
        index: usize,
        total: usize,
        task: String,
        plan_file: PathBuf,
    },
    ReviewComplete {
        index: usize,
        total: usize,
        task: String,
        plan_file: PathBuf,
    },
    ReviewFailed {
        index: usize,
        total: usize,
        task: String,
        error: String,
    },
    ImplementationStart {
        index: usize,
        total: usize,
        task: String,
        plan_file: Option<PathBuf>,
    },
    TaskAgentSpawned {
        index: usize,
        total: usize,
        task: String,
        session_id: String,
    },
    TaskComplete {
        index: usize,
        total: usize,
        task: String,
    },
    TaskFailed {
        index: usize,
        total: usize,
        task: String,
        error: String,
    },
    /// Formatted for chat front ends; the runner itself reports a failing task as
    /// [`ProgressEvent::TaskFailed`].
    TaskSkipped {
        index: usize,
        total: usize,
        task: String,
        reason: String,
    },
    CodebaseAnalysisStart {
        plan_dir: PathBuf,
    },
    CodebaseAnalysisComplete {
        context_file: PathBuf,
        duration_ms: u64,
    },
    CodebaseAnalysisFailed {
        error: String,
    },
    Stopped {
        completed_so_far: usize,
        total: usize,
    },
    Finish {
        completed: usize,
        skipped: usize,
        total: usize,
        duration_ms: u64,
    },
}

/// `Xs` under a minute, `Xm Ys` under an hour, else `Xh Ym`.
pub fn format_duration(ms: u64) -> String {
    let seconds = ms / 1000;
    if seconds < 60 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 60 {
        return format!("{minutes}m {}s", seconds % 60);
    }
    format!("{}h {}m", minutes / 60, minutes % 60)
}

/// The chat text for one event.
pub fn format_progress_message(event: &ProgressEvent) -> String {
    use ProgressEvent as E;
    match event {
        E::Start {
            task_file,
            total_tasks,
        } => format!(
            "🤚 **Anton activated**\n📄 Task file: `{}`\n📋 {total_tasks} task{} pending",
            base_name(task_file),
            if *total_tasks == 1 { "" } else { "s" }
        ),
        E::TaskStart { index, total, task } => format!("\n🔪 **Task {index}/{total}**: {task}"),
        E::DiscoveryStart { index, total, .. } => {
            format!("🔎 Discovery: analyzing codebase for task {index}/{total}...")
        }
        E::DiscoveryComplete { plan_file, .. } => {
            format!("📝 Plan written: `{}`", base_name(plan_file))
        }
        E::DiscoveryFailed { error, .. } => {
            format!("⚠️ Discovery failed: {error}\n└ Falling back to direct execution")
        }
        E::DiscoveryAlreadyComplete { .. } => {
            "✅ Discovery says task already complete — skipping implementation".to_string()
        }
        E::ReviewStart { plan_file, .. } => {
            format!("🧪 Reviewing plan: `{}`...", base_name(plan_file))
        }
        E::ReviewComplete { .. } => "✅ Plan reviewed and refined".to_string(),
        E::ReviewFailed { error, .. } => {
            format!("⚠️ Review failed: {error}\n└ Proceeding with unreviewed plan")
        }
        E::ImplementationStart { plan_file, .. } => match plan_file {
            Some(p) => format!("🛠️ Implementation: following spec `{}`", base_name(p)),
            None => "🛠️ Implementation: direct execution".to_string(),
        },
        E::TaskAgentSpawned { session_id, .. } => {
            format!("🤖 Agent spawned (session: `{session_id}`)")
        }
        E::TaskComplete { index, total, task } => {
            format!("✅ **Task {index}/{total} complete**: {task}")
        }
        E::TaskFailed {
            index,
            total,
            task,
            error,
        } => format!("❌ **Task {index}/{total} failed**: {task}\n└ {error}"),
        E::TaskSkipped {
            index,
            total,
            task,
            reason,
        } => format!("⏭️ **Task {index}/{total} skipped**: {task}\n└ {reason}"),
        E::CodebaseAnalysisStart { .. } => {
            "🔬 **Analyzing codebase** — building shared context for discovery...".to_string()
        }
        E::CodebaseAnalysisComplete {
            context_file,
            duration_ms,
        } => format!(
            "📚 Codebase context ready (`{}`, {})",
            base_name(context_file),
            format_duration(*duration_ms)
        ),
        E::CodebaseAnalysisFailed { error } => {
            format!("⚠️ Codebase analysis failed: {error}\n└ Falling back to per-task discovery")
        }
        E::Stopped {
            completed_so_far,
            total,
        } => format!("🛑 **Anton stopped** ({completed_so_far}/{total} completed before stop)"),
        E::Finish {
            completed,
            skipped,
            total,
            duration_ms,
        } => {
            let mut lines = vec![
                "\n🏁 **Anton finished**".to_string(),
                format!("✅ Completed: {completed}/{total}"),
            ];
            if *skipped > 0 {
                lines.push(format!("⏭️ Skipped: {skipped}"));
            }
            lines.push(format!("⏱️ Duration: {}", format_duration(*duration_ms)));
            lines.join("\n")
        }
    }
}

/// What the runner reports while it works.
#[derive(Debug, Clone, PartialEq)]
pub enum AntonMessage {
    /// A line `anton run` prints on stdout (`[Anton] Mode: …`, `\n[Anton] Task i/n: …`,
    /// `Dry run: …`, the finish summary).
    Log(String),
    /// A line `anton run` prints on stderr (`[Anton] Task failed and was skipped: …` and the
    /// error).
    Error(String),
    Progress(ProgressEvent),
}

/// Receives the runner's messages; called inline, so keep it cheap (print, or send on a channel).
pub type MessageSink = Arc<dyn Fn(AntonMessage) + Send + Sync>;

/// A sink that discards everything.
pub fn null_sink() -> MessageSink {
    Arc::new(|_| {})
}

/// A sink feeding an unbounded channel, for front ends that render on their own task (the
/// interactive `/anton` runs in the background and forwards progress to the chat).
pub fn channel_sink() -> (MessageSink, mpsc::UnboundedReceiver<AntonMessage>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sink: MessageSink = Arc::new(move |m| {
        // A closed receiver means nobody is watching any more; the run itself carries on.
        let _ = tx.send(m);
    });
    (sink, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(59_999), "59s");
        assert_eq!(format_duration(60_000), "1m 0s");
        assert_eq!(format_duration(3_599_000), "59m 59s");
        assert_eq!(format_duration(3_600_000), "1h 0m");
        assert_eq!(format_duration(7_384_000), "2h 3m");
    }

    #[test]
    fn messages() {
        let t = |i| (i, 3usize, "Add tests".to_string());
        let (index, total, task) = t(2);
        assert_eq!(
            format_progress_message(&ProgressEvent::Start {
                task_file: "/r/TASKS.md".into(),
                total_tasks: 3
            }),
            "🤚 **Anton activated**\n📄 Task file: `TASKS.md`\n📋 3 tasks pending"
        );
        assert_eq!(
            format_progress_message(&ProgressEvent::Start {
                task_file: "/r/TASKS.md".into(),
                total_tasks: 1
            }),
            "🤚 **Anton activated**\n📄 Task file: `TASKS.md`\n📋 1 task pending"
        );
        assert_eq!(
            format_progress_message(&ProgressEvent::TaskStart {
                index,
                total,
                task: task.clone()
            }),
            "\n🔪 **Task 2/3**: Add tests"
        );
        assert_eq!(
            format_progress_message(&ProgressEvent::TaskFailed {
                index,
                total,
                task: task.clone(),
                error: "boom".into()
            }),
            "❌ **Task 2/3 failed**: Add tests\n└ boom"
        );
        assert_eq!(
            format_progress_message(&ProgressEvent::TaskSkipped {
                index,
                total,
                task: task.clone(),
                reason: "why".into()
            }),
            "⏭️ **Task 2/3 skipped**: Add tests\n└ why"
        );
        assert_eq!(
            format_progress_message(&ProgressEvent::ImplementationStart {
                index,
                total,
                task: task.clone(),
                plan_file: Some("/p/.agents/tasks/task-2-1.md".into())
            }),
            "🛠️ Implementation: following spec `task-2-1.md`"
        );
        assert_eq!(
            format_progress_message(&ProgressEvent::ImplementationStart {
                index,
                total,
                task,
                plan_file: None
            }),
            "🛠️ Implementation: direct execution"
        );
        assert_eq!(
            format_progress_message(&ProgressEvent::Stopped {
                completed_so_far: 1,
                total: 3
            }),
            "🛑 **Anton stopped** (1/3 completed before stop)"
        );
        assert_eq!(
            format_progress_message(&ProgressEvent::Finish {
                completed: 2,
                skipped: 1,
                total: 3,
                duration_ms: 61_000
            }),
            "\n🏁 **Anton finished**\n✅ Completed: 2/3\n⏭️ Skipped: 1\n⏱️ Duration: 1m 1s"
        );
        assert_eq!(
            format_progress_message(&ProgressEvent::Finish {
                completed: 0,
                skipped: 0,
                total: 0,
                duration_ms: 0
            }),
            "\n🏁 **Anton finished**\n✅ Completed: 0/0\n⏱️ Duration: 0s"
        );
        assert_eq!(
            format_progress_message(&ProgressEvent::CodebaseAnalysisComplete {
                context_file: "/p/CODEBASE_CONTEXT.md".into(),
                duration_ms: 4_000
            }),
            "📚 Codebase context ready (`CODEBASE_CONTEXT.md`, 4s)"
        );
    }

    #[test]
    fn events_serialize_with_phase_tag() {
        let v = serde_json::to_value(ProgressEvent::TaskAgentSpawned {
            index: 1,
            total: 2,
            task: "t".into(),
            session_id: "anton-impl-1-1".into(),
        })
        .ok();
        assert_eq!(
            v,
            Some(
                serde_json::json!({"phase":"task_agent_spawned","index":1,"total":2,"task":"t","sessionId":"anton-impl-1-1"})
            )
        );
    }
}
