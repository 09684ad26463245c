//! The access link of a public host or a home router: a rate cap (`tc tbf`), random loss
//! (nftables `numgen`) and a fixed delay (a [`DelayLink`](crate::delay::DelayLink)), each in
//! both directions.

use std::time::Duration;

use crate::ns::Namespace;
use crate::Error;

/// Loss is configured in parts per [`LOSS_SCALE`] (0.01 %).
const LOSS_SCALE: u32 = 10_000;

/// How long a packet may wait in a rate-capped queue before `tbf` drops it.
const TBF_LATENCY_MS: u32 = 100;

/// What a link does to traffic, the same in each direction. `Link::default()` is a plain
/// veth pair: no cap, no loss, no delay.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Link {
    /// Rate cap in kbit/s, each direction (`None`: line rate).
    pub rate_kbit: Option<u32>,
    /// Random loss in percent, each direction (0–100, steps of 0.01).
    pub loss_pct: f64,
    /// Added one-way delay, each direction: a round trip over this link takes `2 × delay`
    /// more.
    pub delay: Duration,
}

impl Link {
    /// A plain link.
    pub fn new() -> Link {
        Link::default()
    }

    /// Caps the rate at `mbit` Mbit/s each way.
    pub fn rate_mbit(self, mbit: u32) -> Link {
        self.rate_kbit(mbit.saturating_mul(1000))
    }

    /// Caps the rate at `kbit` kbit/s each way.
    pub fn rate_kbit(self, kbit: u32) -> Link {
        Link {
            rate_kbit: Some(kbit),
            ..self
        }
    }

    /// Drops `pct` percent of IP packets at random, each way.
    pub fn loss_pct(self, pct: f64) -> Link {
        Link {
            loss_pct: pct,
            ..self
        }
    }

    /// Delays every frame by `delay` each way (the round trip grows by twice this).
    pub fn delay(self, delay: Duration) -> Link {
        Link { delay, ..self }
    }

    /// Round-trip latency this link adds: twice its one-way delay.
    pub fn rtt(&self) -> Duration {
        self.delay * 2
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        if !(0.0..=100.0).contains(&self.loss_pct) {
            return Err(Error::Spec(format!(
                "loss {} % not in 0–100",
                self.loss_pct
            )));
        }
        if self.rate_kbit == Some(0) {
            return Err(Error::Spec("rate cap of 0 kbit/s".into()));
        }
        if self.delay > Duration::from_secs(10) {
            return Err(Error::Spec(format!("delay {:?} over 10 s", self.delay)));
        }
        Ok(())
    }

    /// Applies the cap and the loss to traffic leaving (`tbf`) and entering (`numgen`)
    /// device `dev` of `ns`; called for both ends, so each direction is capped once and loses
    /// once.
    pub(crate) fn shape(&self, ns: &Namespace, dev: &str) -> Result<(), Error> {
        if let Some(kbit) = self.rate_kbit {
            // Burst: 10 ms at the rate, at least a few full frames.
            let burst = (u64::from(kbit) * 1000 / 8 / 100).max(4 * 1514);
            ns.exec(
                "tc",
                &[
                    "qdisc",
                    "replace",
                    "dev",
                    dev,
                    "root",
                    "tbf",
                    "rate",
                    &format!("{kbit}kbit"),
                    "burst",
                    &burst.to_string(),
                    "latency",
                    &format!("{TBF_LATENCY_MS}ms"),
                ],
                None,
            )?;
        }
        let loss = (self.loss_pct * f64::from(LOSS_SCALE) / 100.0).round() as u32;
        if loss > 0 {
            ns.exec(
                "nft",
                &["-f", "-"],
                Some(&format!(
                    "table netdev kazoo_loss_{dev} {{\n\
                     \tchain ingress {{ type filter hook ingress device \"{dev}\" priority 0; policy accept;\n\
                     \t\tmeta protocol {{ ip, ip6 }} numgen random mod {LOSS_SCALE} < {loss} drop\n\
                     \t}}\n}}\n"
                )),
            )?;
        }
        Ok(())
    }
}
