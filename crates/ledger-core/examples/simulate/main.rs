//! The fault simulator's long run: `cargo run --release -p ledger-core --example simulate
//! -- --seeds 100000` runs seeds 0..100000 on every core and reports what they covered;
//! `--seed S` replays one seed (what a failure prints). See `sim.rs` and
//! docs/fault-model.md.

mod sim;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

struct Args {
    first: u64,
    seeds: u64,
    cycles: u32,
    threads: usize,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        first: 0,
        seeds: 100,
        cycles: 10,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(format!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--seed" => {
                args.first = value()?;
                args.seeds = 1;
            }
            "--from" => args.first = value()?,
            "--seeds" => args.seeds = value()?,
            "--cycles" => args.cycles = u32::try_from(value()?).map_err(|e| e.to_string())?,
            "--threads" => args.threads = usize::try_from(value()?).map_err(|e| e.to_string())?,
            "-h" | "--help" => {
                return Err(
                    "usage: simulate [--seed S | --from S --seeds N] [--cycles C] \
                            [--threads T]"
                        .to_owned(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let next = AtomicU64::new(args.first);
    let end = args.first + args.seeds;
    let total = Mutex::new(sim::Coverage::default());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..args.threads.max(1) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    match sim::run_seed(seed, args.cycles) {
                        Ok(c) => total.lock().expect("not poisoned").add(&c),
                        Err(e) => {
                            eprintln!("{e}");
                            failures.lock().expect("not poisoned").push(seed);
                        }
                    }
                    let done = seed + 1 - args.first;
                    if done.is_multiple_of(1000) {
                        eprintln!("{done} seeds, {:.0?}", started.elapsed());
                    }
                }
            });
        }
    });
    let c = total.into_inner().expect("not poisoned");
    let failures = failures.into_inner().expect("not poisoned");
    println!(
        "seeds {}..{end}: {} passed, {} failed {failures:?}\n\
         cycles {} (crashes {}, power losses {}, crashes during recovery {}), \
         injected faults {}, acknowledged transactions {}, read back {}, in {:.1?}",
        args.first,
        c.seeds,
        failures.len(),
        c.cycles,
        c.crashes,
        c.power_losses,
        c.recovery_crashes,
        c.injected_faults,
        c.acknowledged,
        c.checked,
        started.elapsed()
    );
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
