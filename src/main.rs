//! The `imdb-lstm` binary: a thin shell over the library's command line.

use clap::Parser;

fn main() -> std::process::ExitCode {
    imdb_lstm::cli::main_with(imdb_lstm::cli::Cli::parse())
}
