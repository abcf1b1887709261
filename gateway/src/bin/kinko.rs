//! `kinko`: the exchange. Thin: it parses arguments and calls the gateway library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") | None => match gateway::demo::run(&mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kinko: {e}");
                ExitCode::FAILURE
            }
        },
        Some(other) => {
            eprintln!("kinko: unknown command {other:?}\nusage: kinko [demo]");
            ExitCode::from(2)
        }
    }
}
