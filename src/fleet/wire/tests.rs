use std::time::Instant;

use proptest::prelude::*;

use super::*;
use crate::load::new_histogram;

fn hist(values: &[u64]) -> Histogram<u64> {
    let mut h = new_histogram();
    for v in values {
        let _ = h.record((*v).min(crate::load::MAX_LATENCY_NS));
    }
    h
}

fn snapshot(index: u64, latencies: &[u64], open_loop: bool) -> IntervalSnapshot {
    let mut data = Recorded::with(open_loop, true);
    for (i, v) in latencies.iter().enumerate() {
        let d = Duration::from_nanos(*v);
        if i % 7 == 3 {
            data.failure(ErrorKind::Timeout, d, d / 2);
        } else {
            data.answer([200, 503, 429][i % 3], d, d / 2, 12);
        }
        data.sent(d / 4, i % 5 == 0);
    }
    data.counts.resent = 2;
    data.counts.abandoned = 1;
    IntervalSnapshot {
        index,
        run_start: Instant::now(),
        start: Duration::from_secs(index),
        duration: Duration::from_millis(1000),
        data,
        target_rps: None,
    }
}

fn stream() -> Stream {
    let mut s = Stream::new(1, 2);
    let h = header(
        Share::new(1, 2).expect("1 < 2"),
        UNIX_EPOCH + Duration::from_millis(1_764_650_000_123),
        true,
        true,
    );
    match s.feed(&h) {
        Ok(Item::Header(h)) => {
            assert_eq!(h.share.index(), 1);
            assert_eq!(
                h.start_at,
                UNIX_EPOCH + Duration::from_millis(1_764_650_000_123)
            );
        }
        other => panic!("header: {other:?}"),
    }
    s
}

fn values() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(
        prop_oneof![1u64..5_000_000, 1u64..10_000_000_000, Just(u64::MAX)],
        0..300,
    )
}

proptest! {
    /// A histogram encoded and decoded is identical (every count, min, max, length).
    #[test]
    fn histograms_round_trip(v in values()) {
        let h = hist(&v);
        let back = decode_histogram(&encode_histogram(&h).expect("encode")).expect("decode");
        prop_assert_eq!(back.len(), h.len());
        prop_assert_eq!(
            back.iter_recorded().map(|x| (x.value_iterated_to(), x.count_at_value())).collect::<Vec<_>>(),
            h.iter_recorded().map(|x| (x.value_iterated_to(), x.count_at_value())).collect::<Vec<_>>()
        );
        prop_assert_eq!((back.min(), back.max()), (h.min(), h.max()));
    }

    /// Intervals of several workers, through the wire and added, give the histogram of
    /// all samples: every percentile exactly equal (not an average of percentiles).
    #[test]
    fn merged_decoded_intervals_equal_one_histogram_of_all_samples(
        parts in prop::collection::vec(values(), 1..5),
    ) {
        let mut merged = Recorded::with(true, true);
        let mut all = Vec::new();
        for (w, v) in parts.iter().enumerate() {
            let mut s = stream();
            let line = interval(&snapshot(w as u64, v, true)).expect("encode");
            let Ok(Item::Interval(i)) = s.feed(&line) else {
                panic!("interval line: {line}");
            };
            merged.add(&i.data);
            all.extend_from_slice(v);
        }
        let one = hist(&all);
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
            prop_assert_eq!(merged.latency.value_at_quantile(q), one.value_at_quantile(q));
        }
        prop_assert_eq!(merged.latency.len(), all.len() as u64);
        prop_assert_eq!(merged.counts.requests(), all.len() as u64);
    }
}

#[test]
fn an_interval_round_trips_every_count_and_histogram() {
    let snap = snapshot(
        3,
        &[1_000_000, 2_000_000, 3_000_000, 9_000_000, 40_000, 5],
        true,
    );
    let mut s = stream();
    let line = interval(&snap).expect("encode");
    let Ok(Item::Interval(i)) = s.feed(&line) else {
        panic!("{line}");
    };
    assert_eq!(i.index, 3);
    assert_eq!((i.start, i.duration), (snap.start, snap.duration));
    assert_eq!(i.data.counts, snap.data.counts);
    assert_eq!(i.data.latency, snap.data.latency);
    assert_eq!(i.data.service, snap.data.service);
    assert_eq!(i.data.lag, snap.data.lag);
    assert_eq!(i.data.ok, snap.data.ok);
    // A closed loop has no service or lag histogram.
    let line = interval(&snapshot(4, &[7], false)).expect("encode");
    let Ok(Item::Interval(i)) = s.feed(&line) else {
        panic!("{line}");
    };
    assert!(i.data.service.is_none() && i.data.lag.is_none());
}

#[test]
fn the_end_line_round_trips() {
    let mut s = stream();
    let r = LoadReport {
        started_at: SystemTime::now(),
        elapsed: Duration::from_nanos(2_000_000_123),
        window: Duration::from_secs(2),
        data: Recorded::new(true),
        intervals: 2,
        target_rps: Some(50.5),
        scheduled: Some(101),
        cancelled: true,
        refused_stop: false,
        stop_slack: 3,
    };
    let Ok(Item::End(e)) = s.feed(&end(&r)) else {
        panic!("end");
    };
    assert_eq!(
        e,
        End {
            elapsed: r.elapsed,
            window: r.window,
            intervals: 2,
            scheduled: Some(101),
            target_rps: Some(50.5),
            cancelled: true,
            refused_stop: false,
            stop_slack: 3,
        }
    );
    assert!(s.ended());
    let e = s.feed(&end(&r)).expect_err("nothing after the end");
    assert!(e.to_string().contains("worker 1, line 3"), "{e}");
}

#[test]
fn bad_lines_are_errors_naming_the_worker_and_line() {
    let ok_interval = interval(&snapshot(0, &[5], true)).expect("encode");
    // Data before the header.
    let e = Stream::new(0, 2).feed(&ok_interval).expect_err("no header");
    assert!(
        e.to_string()
            .starts_with("worker 0, line 1: data before the header"),
        "{e}"
    );
    // Another format version.
    let e = Stream::new(0, 2)
        .feed(r#"{"type":"header","version":2,"worker":0,"workers":2}"#)
        .expect_err("version 2");
    assert!(matches!(e, WireError::Version { .. }), "{e}");
    assert!(e.to_string().contains("version 2"), "{e}");
    // A header for another worker.
    let h = header(
        Share::new(0, 2).expect("0 < 2"),
        SystemTime::now(),
        true,
        false,
    );
    let e = Stream::new(1, 2).feed(&h).expect_err("other worker");
    assert!(
        e.to_string().contains("worker 0 of 2, expected 1 of 2"),
        "{e}"
    );
    // Unknown and missing fields, bad JSON, bad histograms, bad codes, going back.
    let mut s = stream();
    let extra = ok_interval.replacen('{', r#"{"extra":1,"#, 1);
    let broken_hist = ok_interval.replacen(r#""latency":""#, r#""latency":"!!"#, 1);
    let bad_code = ok_interval.replacen(r#""status":{"#, r#""status":{"1000":1,"#, 1);
    let bad_kind = ok_interval.replacen(r#""errors":{}"#, r#""errors":{"dns":1}"#, 1);
    for (bad, want) in [
        (extra.as_str(), "line 2: not a valid worker line"),
        (r#"{"type":"end"}"#, "line 3: not a valid worker line"),
        ("{not json", "line 4: not a valid worker line"),
        (
            broken_hist.as_str(),
            "line 5: the latency histogram cannot be decoded",
        ),
        (bad_code.as_str(), "line 6: status code \"1000\""),
        (bad_kind.as_str(), "line 7: unknown error kind \"dns\""),
        (r#"{"type":"other"}"#, "line 8: not a valid worker line"),
    ] {
        let e = s.feed(bad).expect_err(bad);
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
    s.feed(&interval(&snapshot(5, &[5], true)).expect("encode"))
        .expect("index 5");
    let e = s.feed(&ok_interval).expect_err("index 0 after 5");
    assert!(e.to_string().contains("interval 0 after interval 5"), "{e}");
    // A diagnostic line is not an error.
    assert!(
        matches!(s.feed("error: cannot resolve"), Ok(Item::Note(n)) if n == "error: cannot resolve")
    );
}
