//! Reports: what a drill's journal looks like to people and to other tools — the
//! self-contained HTML page (inline SVG charts), JUnit XML for CI, HdrHistogram
//! interval logs, and the webhook message. Everything here is built from a
//! [`Journal`](crate::scenario::journal::Journal) (or the histograms the runner hands
//! over); nothing here prints.
