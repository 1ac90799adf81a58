//! A load tool in an experiment's process provider, mapped to meshdrill's own load
//! engine: `siege --concurrent N --time T URL`, and the same siege arguments inside
//! `kubectl run NAME --image=…siege… -- …` (the usual way to run siege inside the
//! cluster). The tool itself is never needed on the machine.

use std::time::Duration;

use super::model::{LoadCall, LoadStop};

/// siege's own default concurrency (siegerc `concurrent = 25`).
const SIEGE_DEFAULT_CONCURRENT: usize = 25;

/// Splits a command line as a POSIX shell would split words (quotes, backslashes; no
/// expansions).
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated ' in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("unterminated \" in {s:?}")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated \" in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `Some` when `program args` is a load tool meshdrill runs itself; `Err` when it is
/// one but its arguments cannot be run as asked.
pub fn recognise(program: &str, args: &[String]) -> Result<Option<LoadCall>, String> {
    let command = std::iter::once(program.to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    match program {
        "siege" => siege(args, &command, None).map(Some),
        "kubectl" => kubectl_run(args, &command),
        _ => Ok(None),
    }
}

/// `kubectl run NAME … --image=…siege… -- [siege] ARGS`.
fn kubectl_run(args: &[String], command: &str) -> Result<Option<LoadCall>, String> {
    if args.first().map(String::as_str) != Some("run") {
        return Ok(None);
    }
    let Some(dash) = args.iter().position(|a| a == "--") else {
        return Ok(None);
    };
    let (opts, rest) = (&args[1..dash], &args[dash + 1..]);
    let mut image = None;
    let mut ns = None;
    let mut i = 0;
    while i < opts.len() {
        let a = &opts[i];
        let value = |i: &mut usize| -> Option<String> {
            *i += 1;
            opts.get(*i).cloned()
        };
        if let Some(v) = a.strip_prefix("--image=") {
            image = Some(v.to_string());
        } else if a == "--image" {
            image = value(&mut i);
        } else if let Some(v) = a.strip_prefix("--namespace=") {
            ns = Some(v.to_string());
        } else if a == "-n" || a == "--namespace" {
            ns = value(&mut i);
        } else if let Some(v) = a.strip_prefix("-n")
            && !v.is_empty()
        {
            ns = Some(v.to_string());
        }
        i += 1;
    }
    let siege_image = image.as_deref().is_some_and(|i| i.contains("siege"));
    let (tool_args, explicit) = match rest.first().map(String::as_str) {
        Some("siege") => (&rest[1..], true),
        _ => (rest, false),
    };
    if !siege_image && !explicit {
        return Ok(None);
    }
    let ns = ns.unwrap_or_else(|| "default".into());
    siege(tool_args, command, Some(ns)).map(Some)
}

fn siege(args: &[String], command: &str, in_cluster: Option<String>) -> Result<LoadCall, String> {
    let mut conns = None;
    let mut stop = None;
    let mut reps: Option<u64> = None;
    let mut headers = Vec::new();
    let mut ignored = Vec::new();
    let mut urls = Vec::new();
    let mut i = 0;
    // (short, long) flags that take a value.
    let takes_value = |f: &str| {
        matches!(
            f,
            "-c" | "--concurrent"
                | "-t"
                | "--time"
                | "-r"
                | "--reps"
                | "-d"
                | "--delay"
                | "-H"
                | "--header"
                | "-A"
                | "--user-agent"
                | "-l"
                | "--log"
                | "-m"
                | "--mark"
        )
    };
    while i < args.len() {
        let a = args[i].as_str();
        // --flag=value, -cN, -c N
        let (flag, inline): (String, Option<String>) =
            if let Some((f, v)) = a.split_once('=').filter(|(f, _)| f.starts_with("--")) {
                (f.to_string(), Some(v.to_string()))
            } else if let (Some(f), Some(rest)) = (a.get(..2), a.get(2..))
                && f.starts_with('-')
                && !a.starts_with("--")
                && !rest.is_empty()
                && takes_value(f)
            {
                (f.to_string(), Some(rest.to_string()))
            } else {
                (a.to_string(), None)
            };
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| format!("siege {flag} needs a value"))
                }
            }
        };
        match flag.as_str() {
            "-c" | "--concurrent" => {
                let v = value()?;
                let n: usize = v
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1 && *n <= crate::load::MAX_CONNS)
                    .ok_or_else(|| {
                        format!(
                            "siege --concurrent {v:?}: a number of connections from 1 to {}",
                            crate::load::MAX_CONNS
                        )
                    })?;
                conns = Some(n);
            }
            "-t" | "--time" => {
                let v = value()?;
                stop = Some(siege_time(&v)?);
            }
            "-r" | "--reps" => {
                let v = value()?;
                reps = Some(
                    v.parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| format!("siege --reps {v:?}: a positive number"))?,
                );
            }
            "-H" | "--header" => headers.push(value()?),
            "-A" | "--user-agent" => headers.push(format!("User-Agent: {}", value()?)),
            "-d" | "--delay" => {
                let v = value()?;
                ignored.push(format!("--delay={v} (requests are sent back to back)"));
            }
            "-l" | "--log" | "-m" | "--mark" => {
                let _ = value()?;
            }
            "-b" | "--benchmark" | "-v" | "--verbose" | "-q" | "--quiet" | "-g" | "--get"
            | "--no-parser" | "--no-follow" | "-j" | "--json-output" => {}
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(format!(
                    "siege {f} is not something meshdrill's load engine does; it runs -c/--concurrent, -t/--time, -r/--reps, -H/--header, -A/--user-agent, -b, -d (not reproduced), -v, -q and one URL"
                ));
            }
            _ => urls.push(a.to_string()),
        }
        i += 1;
    }
    let url = match urls.as_slice() {
        [u] => u.clone(),
        [] => return Err(format!("`{command}`: no URL to send load to")),
        [_, m, ..] if m.eq_ignore_ascii_case("POST") || m.eq_ignore_ascii_case("PUT") => {
            return Err(format!(
                "`{command}`: siege's `URL {m} data` form is not supported; meshdrill sends GET"
            ));
        }
        more => {
            return Err(format!(
                "`{command}`: one URL expected, found {}",
                more.join(" ")
            ));
        }
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("`{command}`: {url:?} is not an http(s) URL"));
    }
    let connections = conns.unwrap_or(SIEGE_DEFAULT_CONCURRENT);
    let stop = match (stop, reps) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "`{command}`: siege takes --time or --reps, not both"
            ));
        }
        (Some(d), None) => LoadStop::Duration(d),
        (None, Some(r)) => LoadStop::Requests(r.saturating_mul(connections as u64)),
        (None, None) => {
            return Err(format!(
                "`{command}`: without --time or --reps siege runs until it is interrupted; give --time (e.g. --time 30S)"
            ));
        }
    };
    Ok(LoadCall {
        command: command.to_string(),
        url,
        connections,
        stop,
        headers,
        in_cluster,
        ignored,
    })
}

/// siege's `NUM[SMH]` (seconds, minutes, hours; either case).
fn siege_time(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    let bad = || format!("siege --time {v:?}: NUM followed by S, M or H (e.g. 30S, 2M)");
    let unit = v.chars().last().ok_or_else(bad)?;
    let mult = match unit.to_ascii_uppercase() {
        'S' => 1,
        'M' => 60,
        'H' => 3600,
        _ => return Err(bad()),
    };
    let n: u64 = v[..v.len() - 1].parse().map_err(|_| bad())?;
    let secs = n
        .checked_mul(mult)
        .filter(|s| *s >= 1 && *s <= 86_400)
        .ok_or_else(bad)?;
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        split_words(s).expect("split")
    }

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(
            words(r#"--concurrent 50 --time 20S "http://go-demo-8/limiter""#),
            [
                "--concurrent",
                "50",
                "--time",
                "20S",
                "http://go-demo-8/limiter"
            ]
        );
        assert_eq!(words(r"a 'b c' d\ e"), ["a", "b c", "d e"]);
        assert!(split_words("'open").is_err());
    }

    #[test]
    fn siege_and_kubectl_run() {
        let l = recognise(
            "siege",
            &words("--concurrent 50 --time 20S http://go-demo-8/limiter"),
        )
        .expect("ok")
        .expect("load");
        assert_eq!(l.connections, 50);
        assert_eq!(l.stop, LoadStop::Duration(Duration::from_secs(20)));
        assert_eq!(l.url, "http://go-demo-8/limiter");
        assert_eq!(l.in_cluster, None);

        let k = recognise(
            "kubectl",
            &words("run siege --image yokogawa/siege --generator run-pod/v1 -it --rm -n go-demo-8 -- --concurrent 50 --time 20S http://go-demo-8/limiter"),
        )
        .expect("ok")
        .expect("load");
        assert_eq!(k.in_cluster.as_deref(), Some("go-demo-8"));
        assert_eq!(k.connections, 50);

        let k2 = recognise(
            "kubectl",
            &words("run s --image=busybox -- siege -c5 -r 3 http://x/"),
        )
        .expect("ok")
        .expect("load");
        assert_eq!(k2.stop, LoadStop::Requests(15));
        assert_eq!(k2.in_cluster.as_deref(), Some("default"));

        assert!(
            recognise("kubectl", &words("get pods"))
                .expect("ok")
                .is_none()
        );
        assert!(
            recognise("kubectl", &words("run x --image=nginx -- sh"))
                .expect("ok")
                .is_none()
        );
        assert!(recognise("curl", &words("http://x")).expect("ok").is_none());
    }

    #[test]
    fn siege_refusals() {
        assert!(
            recognise("siege", &words("-c 5 http://x/")).is_err(),
            "unbounded"
        );
        assert!(
            recognise("siege", &words("-c 5 -t 20 http://x/")).is_err(),
            "no unit"
        );
        assert!(recognise("siege", &words("-f urls.txt -t 1M")).is_err());
        assert!(recognise("siege", &words("-t 1M")).is_err(), "no url");
        assert!(recognise("siege", &words("-c 0 -t 1M http://x/")).is_err());
        // Not a char boundary at byte 2: an unknown flag, not a panic.
        assert!(recognise("siege", &words("-éx -t 1M http://x/")).is_err());
        let d = recognise("siege", &words("-d 1 -t 1m http://x/"))
            .expect("ok")
            .expect("load");
        assert_eq!(d.connections, 25);
        assert_eq!(d.stop, LoadStop::Duration(Duration::from_secs(60)));
        assert_eq!(d.ignored.len(), 1);
    }
}
