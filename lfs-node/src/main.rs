use clap::Parser;
use lfs_node::options::Cli;

fn main() {
    let cli = Cli::parse();
    let code = match cli.tool {
        Some(tool) => match lfs_node::tools::run(tool) {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) => {
                eprintln!("lfs-node: {e:#}");
                1
            }
        },
        None => match lfs_node::daemon::run(cli.daemon) {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("lfs-node: {e:#}");
                1
            }
        },
    };
    std::process::exit(code);
}
