//! A small supervisor for the long-running tasks of one process: relays, consumers,
//! listeners, purges. Tasks are named and grouped in *stages*; the first task to fail (or to
//! end while it should be running) stops the rest; stopping drains the stages in the order
//! they were added (listeners first, say, then consumers, so that the last requests still
//! reach their outboxes), all within one deadline, past which what is left is cut short.
//!
//! Cutting short loses nothing in tramline: a command's effect and its outbox message commit
//! together, and an offset is committed only after its records' effects, so whatever was cut
//! short is simply redone on the next start.
//!
//! ```
//! use std::time::Duration;
//! use tramline_core::supervisor::Supervisor;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut supervisor = Supervisor::new();
//! let work = supervisor.stage("work");
//! supervisor.spawn(work, "ticker", |stop| async move {
//!     stop.cancelled().await; // a real task works until asked to stop
//!     Ok::<(), std::io::Error>(())
//! });
//! // Runs until the `until` future completes, then drains: here at once.
//! let outcome = supervisor.run(async { "done" }, Duration::from_secs(5)).await;
//! assert_eq!(outcome.unwrap(), "done");
//! # }
//! ```

use crate::error::{sentence, BoxError};
use std::future::Future;
use std::task::Poll;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Why a supervised run ended badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// A task returned an error (while running, or while it was being stopped).
    #[error("the {task} failed")]
    Failed {
        /// The task's name.
        task: String,
        /// Its error.
        #[source]
        source: BoxError,
    },
    /// A task ended on its own while the process should still be running.
    #[error("the {task} stopped unexpectedly")]
    Ended {
        /// The task's name.
        task: String,
    },
    /// A task panicked.
    #[error("the {task} panicked")]
    Panicked {
        /// The task's name.
        task: String,
    },
    /// Stopping took longer than the deadline; the tasks named were cut short.
    #[error("did not stop within {} s; cut short: {}", deadline.as_secs_f64(), cut_short.join(", "))]
    Deadline {
        /// The deadline.
        deadline: Duration,
        /// The tasks still running at the deadline, aborted.
        cut_short: Vec<String>,
    },
}

/// A group of tasks stopped together; see [`Supervisor::stage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage(usize);

type Outcome = (String, Result<(), BoxError>);

#[derive(Debug)]
struct StageTasks {
    name: String,
    stop: CancellationToken,
    tasks: JoinSet<Outcome>,
    /// Names of the tasks not yet joined, by tokio task id.
    running: Vec<(tokio::task::Id, String)>,
}

impl StageTasks {
    fn joined(&mut self, id: tokio::task::Id) -> String {
        match self.running.iter().position(|(i, _)| *i == id) {
            Some(at) => self.running.swap_remove(at).1,
            None => "task".to_owned(),
        }
    }
}

/// Named tasks in stages: the first failure stops the rest; stages drain in order within a
/// deadline. See the [module](self).
#[derive(Debug, Default)]
pub struct Supervisor {
    stages: Vec<StageTasks>,
}

impl Supervisor {
    /// A supervisor with no tasks.
    pub fn new() -> Self {
        Supervisor::default()
    }

    /// A new stage. Stages stop in the order they were added: every task of the first is
    /// asked to stop and has ended before the second is asked.
    pub fn stage(&mut self, name: &str) -> Stage {
        self.stages.push(StageTasks {
            name: name.to_owned(),
            stop: CancellationToken::new(),
            tasks: JoinSet::new(),
            running: Vec::new(),
        });
        Stage(self.stages.len() - 1)
    }

    /// Runs `task` in `stage` under `name` (e.g. `order relay`). It is given the stage's stop
    /// token and must end soon after it fires; ending before that (`Ok` or not) stops the
    /// whole supervisor.
    ///
    /// # Panics
    /// If `stage` comes from another supervisor.
    pub fn spawn<F, Fut, E>(&mut self, stage: Stage, name: impl Into<String>, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let name = name.into();
        let s = &mut self.stages[stage.0];
        let work = task(s.stop.clone());
        let label = name.clone();
        let handle = s
            .tasks
            .spawn(async move { (label, work.await.map_err(Into::into)) });
        s.running.push((handle.id(), name));
    }

    /// The stop token of `stage`, for work that is not a task of its own.
    pub fn stop_token(&self, stage: Stage) -> CancellationToken {
        self.stages[stage.0].stop.clone()
    }

    /// How many tasks are running.
    pub fn len(&self) -> usize {
        self.stages.iter().map(|s| s.running.len()).sum()
    }

    /// Whether no task is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs until `until` completes or a task ends, whichever is first; then stops every
    /// stage in order within `deadline`. The value of `until` when the run was stopped by
    /// it and stopped cleanly; otherwise the first failure: the task that ended, else the
    /// first error while stopping, else the deadline. Later errors go to the log.
    pub async fn run<R>(
        mut self,
        until: impl Future<Output = R>,
        deadline: Duration,
    ) -> Result<R, SupervisorError> {
        let first = tokio::select! {
            value = until => Ok(value),
            ended = next_ended(&mut self.stages) => Err(ended),
        };
        let first = first.map_err(|(task, outcome)| match outcome {
            Ended::Ok => SupervisorError::Ended { task },
            Ended::Err(source) => SupervisorError::Failed { task, source },
            Ended::Panicked => SupervisorError::Panicked { task },
        });
        if let Err(e) = &first {
            tracing::error!(error = %sentence(e), "stopping every task");
        }
        let drained = self.stop(deadline).await;
        match (first, drained) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
            (Ok(value), Ok(())) => Ok(value),
        }
    }

    /// Stops every stage in order within `deadline`; the first error on the way.
    pub async fn stop(mut self, deadline: Duration) -> Result<(), SupervisorError> {
        let mut first: Option<SupervisorError> = None;
        let drained = tokio::time::timeout(deadline, async {
            for s in &mut self.stages {
                tracing::debug!(stage = %s.name, tasks = s.running.len(), "stopping");
                s.stop.cancel();
                while let Some(joined) = s.tasks.join_next_with_id().await {
                    let (task, ended) = outcome(s, joined);
                    let e = match ended {
                        Ended::Ok => {
                            tracing::info!(task = %task, "stopped");
                            continue;
                        }
                        Ended::Err(source) => SupervisorError::Failed { task, source },
                        Ended::Panicked => SupervisorError::Panicked { task },
                    };
                    if first.is_none() {
                        first = Some(e);
                    } else {
                        tracing::error!(error = %sentence(&e), "while stopping");
                    }
                }
            }
        })
        .await;
        if drained.is_err() {
            let mut cut_short = Vec::new();
            for s in &mut self.stages {
                s.stop.cancel();
                s.tasks.abort_all();
                cut_short.extend(s.running.drain(..).map(|(_, name)| name));
                while s.tasks.join_next().await.is_some() {}
            }
            let e = SupervisorError::Deadline {
                deadline,
                cut_short,
            };
            match &first {
                None => first = Some(e),
                Some(_) => tracing::error!(error = %sentence(&e), "while stopping"),
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// How a task ended.
enum Ended {
    Ok,
    Err(BoxError),
    Panicked,
}

fn outcome(
    s: &mut StageTasks,
    joined: Result<(tokio::task::Id, Outcome), tokio::task::JoinError>,
) -> (String, Ended) {
    match joined {
        Ok((id, (name, result))) => {
            s.joined(id);
            (name, result.map_or_else(Ended::Err, |()| Ended::Ok))
        }
        Err(e) => {
            let name = s.joined(e.id());
            (name, Ended::Panicked)
        }
    }
}

/// The first task to end in any stage (pending forever when none runs).
async fn next_ended(stages: &mut [StageTasks]) -> (String, Ended) {
    std::future::poll_fn(|cx| {
        for s in stages.iter_mut() {
            if let Poll::Ready(Some(joined)) = s.tasks.poll_join_next_with_id(cx) {
                return Poll::Ready(outcome(s, joined));
            }
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::sync::Barrier;

    type Log = Arc<Mutex<Vec<String>>>;

    /// A task that waits for its stop token and logs that it stopped.
    fn stops(log: &Log, name: &'static str) -> impl FnOnce(CancellationToken) -> Stopping {
        let log = Arc::clone(log);
        move |stop| {
            Box::pin(async move {
                stop.cancelled().await;
                log.lock().expect("log").push(name.to_owned());
                Ok(())
            })
        }
    }
    type Stopping =
        std::pin::Pin<Box<dyn Future<Output = Result<(), std::io::Error>> + Send + 'static>>;

    #[tokio::test]
    async fn stages_drain_in_the_order_they_were_added() {
        let log: Log = Arc::default();
        let mut s = Supervisor::new();
        let http = s.stage("http");
        let work = s.stage("work");
        // Spawned in the opposite order, so only the stages can put them right.
        s.spawn(work, "consumer", stops(&log, "consumer"));
        s.spawn(http, "listener", stops(&log, "listener"));
        assert_eq!(s.len(), 2);
        let value = s
            .run(async { 7 }, Duration::from_secs(5))
            .await
            .expect("clean stop");
        assert_eq!(value, 7);
        assert_eq!(*log.lock().expect("log"), ["listener", "consumer"]);
    }

    #[tokio::test]
    async fn the_first_failure_stops_the_rest_and_is_returned() {
        let log: Log = Arc::default();
        let mut s = Supervisor::new();
        let work = s.stage("work");
        s.spawn(work, "consumer", stops(&log, "consumer"));
        let started = Arc::new(Barrier::new(2));
        let go = Arc::clone(&started);
        s.spawn(work, "relay", move |_| async move {
            go.wait().await;
            Err::<(), _>(std::io::Error::other("broker gone"))
        });
        let e = s
            .run(
                async move {
                    started.wait().await;
                    std::future::pending::<()>().await
                },
                Duration::from_secs(5),
            )
            .await
            .expect_err("the relay failed");
        assert_eq!(e.to_string(), "the relay failed");
        assert_eq!(sentence(&e), "the relay failed: broker gone");
        assert_eq!(*log.lock().expect("log"), ["consumer"]);
    }

    #[tokio::test]
    async fn a_task_that_ends_on_its_own_stops_the_run() {
        let mut s = Supervisor::new();
        let work = s.stage("work");
        s.spawn(work, "purge", |_| async { Ok::<(), std::io::Error>(()) });
        let e = s
            .run(std::future::pending::<()>(), Duration::from_secs(5))
            .await
            .expect_err("ended");
        assert!(matches!(e, SupervisorError::Ended { ref task } if task == "purge"));
    }

    #[tokio::test]
    async fn a_panic_is_named() {
        let mut s = Supervisor::new();
        let work = s.stage("work");
        s.spawn(work, "view consumer", |_| async {
            if std::hint::black_box(true) {
                panic!("bug");
            }
            Ok::<(), std::io::Error>(())
        });
        let e = s
            .run(std::future::pending::<()>(), Duration::from_secs(5))
            .await
            .expect_err("panicked");
        assert_eq!(e.to_string(), "the view consumer panicked");
    }

    #[tokio::test(start_paused = true)]
    async fn what_outlives_the_deadline_is_cut_short_and_named() {
        let log: Log = Arc::default();
        let mut s = Supervisor::new();
        let work = s.stage("work");
        s.spawn(work, "stubborn", |_| async {
            std::future::pending::<()>().await;
            Ok::<(), std::io::Error>(())
        });
        s.spawn(work, "polite", stops(&log, "polite"));
        let e = s
            .run(async {}, Duration::from_secs(2))
            .await
            .expect_err("deadline");
        match e {
            SupervisorError::Deadline { cut_short, .. } => assert_eq!(cut_short, ["stubborn"]),
            other => panic!("expected the deadline, got {other}"),
        }
        assert_eq!(*log.lock().expect("log"), ["polite"]);
    }

    #[tokio::test]
    async fn an_error_while_stopping_is_returned() {
        let mut s = Supervisor::new();
        let work = s.stage("work");
        s.spawn(work, "consumer", |stop| async move {
            stop.cancelled().await;
            Err::<(), _>(std::io::Error::other("commit failed"))
        });
        let e = s
            .run(async {}, Duration::from_secs(5))
            .await
            .expect_err("failed while stopping");
        assert_eq!(sentence(&e), "the consumer failed: commit failed");
    }
}
