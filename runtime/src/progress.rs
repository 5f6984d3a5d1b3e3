//! Progress of long work, reported by the libraries and shown by whoever
//! calls them: `laurelc` draws a bar on a terminal, a test or a pipeline shows
//! nothing ([`Silent`]). The loops that report: a benchmark's runs, a
//! profile's rounds, a check's runs, and (in the compiler) fusion's windows.
//! O(1) per report.

/// A sink for progress reports. Every method has a do-nothing default.
pub trait Progress {
    /// Work named `what` of `total` steps starts.
    fn start(&mut self, what: &str, total: u64) {
        let _ = (what, total);
    }

    /// `done` steps of it are done.
    fn set(&mut self, done: u64) {
        let _ = done;
    }

    /// It is finished.
    fn finish(&mut self) {}
}

/// Reports to nobody.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the reports.
    #[derive(Default)]
    struct Log(Vec<String>);

    impl Progress for Log {
        fn start(&mut self, what: &str, total: u64) {
            self.0.push(format!("start {what} {total}"));
        }
        fn set(&mut self, done: u64) {
            self.0.push(format!("{done}"));
        }
        fn finish(&mut self) {
            self.0.push("finish".into());
        }
    }

    #[test]
    fn a_sink_hears_what_it_implements() {
        let mut log = Log::default();
        let p: &mut dyn Progress = &mut log;
        p.start("runs", 2);
        p.set(1);
        p.finish();
        assert_eq!(log.0, ["start runs 2", "1", "finish"]);
        // The silent sink takes the same calls.
        let mut s = Silent;
        s.start("x", 1);
        s.set(1);
        s.finish();
    }
}
