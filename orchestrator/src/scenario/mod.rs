//! `fame scenario run` (being written).

pub fn run(_args: crate::cli::ScenarioRunArgs) -> u8 {
    eprintln!("fame scenario: not ready yet");
    2
}
