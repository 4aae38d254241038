//! The fault simulator (issue 18, docs/fault-model.md) in the test suite: a few hundred
//! seeds of crashes, power losses and I/O faults against the real engine on a simulated
//! disk. `SIM_SEED=S cargo test -p ledger-core --test simulator` replays one seed; the
//! long run is `cargo run --release -p ledger-core --example simulate -- --seeds N`.

#[path = "../examples/simulate/sim.rs"]
#[allow(dead_code)]
mod sim;

/// Seeds the suite runs, and process lifetimes per seed.
const SEEDS: u64 = 300;
const CYCLES: u32 = 8;

#[test]
fn acknowledged_transactions_survive_every_simulated_fault() {
    let seeds = match std::env::var("SIM_SEED") {
        Ok(seed) => {
            let seed = seed.parse().expect("SIM_SEED is a number");
            seed..seed + 1
        }
        Err(_) => 0..SEEDS,
    };
    let mut total = sim::Coverage::default();
    let mut failures = Vec::new();
    for seed in seeds.clone() {
        match sim::run_seed(seed, CYCLES) {
            Ok(c) => total.add(&c),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{total:?}");
    if seeds.end - seeds.start == SEEDS {
        // The run covered what it is meant to.
        assert!(total.power_losses > 200 && total.crashes > 200, "{total:?}");
        assert!(
            total.recovery_crashes > 100 && total.injected_faults > 100,
            "{total:?}"
        );
        assert!(total.acknowledged > 10_000, "{total:?}");
    }
}
