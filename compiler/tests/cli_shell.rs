//! The command line as a shell user meets it: every enumerated flag lists its
//! values in `--help`; completions and the man page are generated from the
//! same definition; progress bars appear on a terminal only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::laurelc;

fn stdout(o: &std::process::Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn help_lists_every_enumerated_flags_values() {
    let top = stdout(&laurelc(&["--help"]));
    for v in [
        "rw+lr+pa", "lr+pa", "softmax", "sigmoid", "vector", "identity", "random",
    ] {
        assert!(
            top.contains(&format!("- {v}")),
            "`--help` does not list {v}"
        );
    }
    // With what each one means.
    assert!(
        top.contains("α·f + β·(x + Σ_j γ_j·(x_{i−j}·A_j)·B_j)"),
        "{top}"
    );
    let fuse = stdout(&laurelc(&["fuse", "--help"]));
    assert!(
        fuse.contains("- onnx") && fuse.contains("- tract"),
        "{fuse}"
    );
    // A value that is none of them: the library's own message, exit 2.
    let o = laurelc(&["fuse", "m.onnx", "-o", "o.onnx", "--target", "gpu"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected onnx or tract"));
}

#[test]
fn completions_know_the_subcommands_flags_and_values() {
    let bash = stdout(&laurelc(&["completions", "bash"]));
    for word in [
        "fuse",
        "inspect",
        "--variant",
        "--rw-param",
        "--target",
        "rw+lr+pa",
        "vector",
        "tract",
    ] {
        assert!(bash.contains(word), "bash completions lack {word}");
    }
    // A script bash can read.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("laurelc.bash");
    std::fs::write(&path, &bash).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let s = stdout(&laurelc(&["completions", shell]));
        assert!(s.contains("variant") && s.contains("rw+lr+pa"), "{shell}");
    }
    assert_eq!(laurelc(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn the_man_page_is_roff_for_every_subcommand() {
    let man = stdout(&laurelc(&["man"]));
    assert!(
        man.contains(".TH laurelc 1"),
        "{}",
        &man[..man.len().min(200)]
    );
    for word in [
        "fuse",
        "bench",
        "profile",
        "completions",
        "\\-\\-variant",
        "rw+lr+pa",
    ] {
        assert!(man.contains(word), "the man page lacks {word}");
    }
}

/// `laurelc bench` long enough to draw, run under `script` (a terminal) or
/// with stderr piped; returns what the terminal (or the pipe) received.
fn bench_output(terminal: bool, extra: &[&str]) -> String {
    let model = fixture("tiny_resnet.onnx");
    let mut args = vec![
        "bench".to_owned(),
        model.clone(),
        model,
        "--runs".into(),
        "400".into(),
        "--warmup".into(),
        "0".into(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let bin = env!("CARGO_BIN_EXE_laurelc");
    if terminal {
        // `script` gives the command a pseudo-terminal and records what it shows.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("typescript");
        let line = std::iter::once(bin.to_owned())
            .chain(args)
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let o = Command::new("script")
            .args(["-qec", &line])
            .arg(&log)
            .output()
            .expect("`script` (util-linux) runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned()
    } else {
        let o = Command::new(bin).args(&args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
}

#[test]
fn progress_bars_appear_on_a_terminal_only() {
    assert!(
        bench_output(true, &[]).contains("bench runs"),
        "no bar on a terminal"
    );
    assert!(
        !bench_output(true, &["--quiet"]).contains("bench runs"),
        "a bar with --quiet"
    );
    assert!(
        !bench_output(true, &["--json"]).contains("bench runs"),
        "a bar with --json"
    );
    let piped = bench_output(false, &[]);
    assert!(
        !piped.contains("bench runs") && !piped.contains('\u{1b}'),
        "{piped}"
    );
}

#[test]
fn check_reads_inputs_from_an_npz_like_run_and_bench() {
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("in.npz");
    let x = laurel_runtime::Tensor::from_shape(&[1, 3, 16, 16], &vec![0.25f32; 768]).unwrap();
    laurel_runtime::write_npz(&npz, &[("input".to_owned(), x)]).unwrap();
    let model = fixture("tiny_resnet.onnx");
    let o = laurelc(&[
        "check",
        &model,
        &model,
        "--input",
        npz.to_str().unwrap(),
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["passed"], serde_json::json!(true));
    // The file sized the model: a wrong shape for it is refused, exit 2.
    let bad = laurel_runtime::Tensor::from_shape(&[1, 5, 16, 16], &vec![0.0f32; 1280]).unwrap();
    laurel_runtime::write_npz(&npz, &[("input".to_owned(), bad)]).unwrap();
    let o = laurelc(&["check", &model, &model, "--input", npz.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn quiet_goes_before_or_after_the_command() {
    assert!(!bench_output(true, &["-q"]).contains("bench runs"));
    let model = fixture("tiny_resnet.onnx");
    let o = laurelc(&["-q", "inspect", &model]);
    assert!(stdout(&o).contains("residuals: 3"), "{}", stdout(&o));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.onnx");
    let o = laurelc(&["--quiet", &model, "-o", out.to_str().unwrap()]);
    assert!(stdout(&o).contains("augmented 2 blocks"));
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    use std::io::Read as _;
    let model = fixture("tiny_resnet.onnx");
    for args in [
        vec!["inspect", &model],
        vec!["man"],
        vec!["inspect", "--json", &model],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_laurelc"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before laurelc writes.
        drop(child.stdout.take());
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panic"), "{args:?}: {err}");
    }
}

#[test]
fn a_rank_too_large_is_refused_not_a_crash() {
    let model = fixture("tiny_preln_transformer.onnx");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.onnx");
    for rank in ["4611686018427387904", "4000000000"] {
        let o = laurelc(&[
            &model,
            "-o",
            out.to_str().unwrap(),
            "--variant",
            "lr",
            "--rank",
            rank,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{rank}: {err}");
        assert!(
            err.contains("2^28 elements") && !err.contains("panic"),
            "{err}"
        );
        assert!(!out.exists());
    }
    // The variant's flags mean nothing to the pure round trip.
    let o = laurelc(&[
        &model,
        "-o",
        out.to_str().unwrap(),
        "--no-passes",
        "--variant",
        "lr",
        "--rank",
        "0",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn each_command_has_its_own_man_page() {
    let fuse = stdout(&laurelc(&["man", "fuse"]));
    assert!(
        fuse.contains(".TH laurelc-fuse 1") && fuse.contains("\\-\\-target"),
        "{fuse}"
    );
    let bench = stdout(&laurelc(&["man", "bench"]));
    assert!(bench.contains("\\-\\-loads"));
    assert_eq!(laurelc(&["man", "nope"]).status.code(), Some(2));
}
