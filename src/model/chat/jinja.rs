//! The Jinja environment chat templates run in: what Hugging Face's `apply_chat_template`
//! gives a template (blocks trimmed, `raise_exception`, `strftime_now`, `tojson` written as
//! Python's `json.dumps` writes it, Python string and dict methods, loop controls), on
//! minijinja.

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};

/// The name the template is registered under.
pub const TEMPLATE_NAME: &str = "chat";

/// An environment holding `source` as [`TEMPLATE_NAME`]; an error says what does not compile.
pub fn environment(source: &str) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env.add_template_owned(TEMPLATE_NAME, strip_generation_tags(source))?;
    Ok(env)
}

/// Training templates mark the assistant's text with `{% generation %}` blocks, which
/// `apply_chat_template` ignores when rendering; minijinja does not know the tag, so it goes.
fn strip_generation_tags(source: &str) -> String {
    let tag = regex::Regex::new(r"\{%-?\s*(end)?generation\s*-?%\}").expect("a valid expression");
    tag.replace_all(source, "").into_owned()
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// The current UTC time in a `strftime` format (the directives templates use: dates, times,
/// month and day names).
fn strftime_now(format: String) -> Result<String, Error> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Ok(strftime(secs as i64, &format))
}

const MONTHS: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// Formats Unix time `secs` (UTC) with `format`'s `%` directives.
pub fn strftime(secs: i64, format: &str) -> String {
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday.
    let yday = days - days_from_civil(year, 1, 1) + 1;
    let (h, m, s) = (in_day / 3600, in_day / 60 % 60, in_day % 60);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:2}")),
            Some('B') => out.push_str(MONTHS[month as usize - 1]),
            Some('b') | Some('h') => out.push_str(&MONTHS[month as usize - 1][..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('H') => out.push_str(&format!("{h:02}")),
            Some('I') => out.push_str(&format!("{:02}", (h + 11) % 12 + 1)),
            Some('p') => out.push_str(if h < 12 { "AM" } else { "PM" }),
            Some('M') => out.push_str(&format!("{m:02}")),
            Some('S') => out.push_str(&format!("{s:02}")),
            Some('F') => out.push_str(&format!("{year}-{month:02}-{day:02}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `tojson` as Hugging Face defines it: Python's `json.dumps` (`", "` and `": "` separators,
/// non-ASCII kept), with `indent` and `sort_keys`.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("cannot write as JSON: {e}")))?;
    let mut out = String::new();
    write_json(&json, indent, sort_keys.unwrap_or(false), 0, &mut out);
    Ok(Value::from_safe_string(out))
}

fn write_json(v: &serde_json::Value, indent: Option<usize>, sort: bool, depth: usize, out: &mut String) {
    use serde_json::Value as J;
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * depth));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v {
        J::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_json(item, indent, sort, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        J::Object(map) if !map.is_empty() => {
            let mut entries: Vec<(&String, &J)> = map.iter().collect();
            if sort {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                out.push_str(&J::String(k.clone()).to_string());
                out.push_str(": ");
                write_json(item, indent, sort, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, ctx: minijinja::Value) -> Result<String, Error> {
        environment(source)?.get_template(TEMPLATE_NAME)?.render(ctx)
    }

    #[test]
    fn strftime_writes_dates_as_python_does() {
        // 2024-07-26 13:25:09 UTC, a Friday.
        assert_eq!(strftime(1_722_000_309, "%d %b %Y"), "26 Jul 2024");
        assert_eq!(strftime(1_722_000_309, "%A %B %e, %H:%M:%S %p %j %%"), "Friday July 26, 13:25:09 PM 208 %");
        assert_eq!(strftime(0, "%F %a"), "1970-01-01 Thu");
    }

    #[test]
    fn tojson_writes_what_json_dumps_writes() {
        // Keys come out in order (serde_json keeps maps sorted; Python keeps insertion order, the same here).
        let out = render("{{ x | tojson }}|{{ x | tojson(indent=2) }}", minijinja::context! { x => serde_json::json!({"a": {}, "b": [1, "é"]}) }).unwrap();
        assert_eq!(out, "{\"a\": {}, \"b\": [1, \"é\"]}|{\n  \"a\": {},\n  \"b\": [\n    1,\n    \"é\"\n  ]\n}");
    }

    #[test]
    fn python_methods_loop_controls_and_raise_exception_work() {
        let src = "{% for m in messages %}{% if loop.index0 == 2 %}{% break %}{% endif %}{{ m.content.strip().upper() }};{% endfor %}";
        let ctx = minijinja::context! { messages => vec![minijinja::context!{content => " a "}, minijinja::context!{content => "b"}, minijinja::context!{content => "c"}] };
        assert_eq!(render(src, ctx).unwrap(), "A;B;");
        let err = render("{{ raise_exception('roles must alternate') }}", minijinja::context! {}).unwrap_err();
        assert!(err.to_string().contains("roles must alternate"), "{err}");
    }

    #[test]
    fn generation_tags_are_ignored() {
        assert_eq!(render("a{% generation %}b{% endgeneration %}c", minijinja::context! {}).unwrap(), "abc");
    }
}
