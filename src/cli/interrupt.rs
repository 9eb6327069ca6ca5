//! Ctrl-C, caught from the moment a command starts: long commands register for SIGINT before
//! they load anything, so an interrupt during model loading is not lost (and does not kill
//! the process before it can keep what is finished); they then stop at their next await and
//! exit 130.

use anyhow::Context;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// A registration for SIGINT, made on `rt`.
pub struct Interrupt(Signal);

impl Interrupt {
    /// Registers now: from here on, Ctrl-C is delivered to [`Interrupt::wait`].
    pub fn register(rt: &tokio::runtime::Runtime) -> anyhow::Result<Interrupt> {
        let _guard = rt.enter();
        Ok(Interrupt(signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?))
    }

    /// Completes when Ctrl-C was pressed (now or at any time since registering).
    pub async fn wait(&mut self) {
        self.0.recv().await;
    }
}
