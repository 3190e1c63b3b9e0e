//! Runs one simulation and prints its report as JSON:
//! `cargo run -p phimon-sim --release --example run -- NODES [ROUNDS] [LOSS] [CRASHES]`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| args.get(i).and_then(|a| a.parse::<f64>().ok());
    let cfg = phimon_sim::SimConfig {
        nodes: num(0).map_or(1000, |v| v as usize),
        rounds: num(1).map_or(300, |v| v as u64),
        loss: num(2).unwrap_or(0.01),
        crashes: num(3).map_or(5, |v| v as usize),
        ..phimon_sim::SimConfig::default()
    };
    let r = phimon_sim::run(&cfg);
    println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
}
