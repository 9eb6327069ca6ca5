//! Privacy before storage: finds e-mail addresses, phone numbers and payment-card numbers in
//! text and replaces them with `[email]`, `[phone]` and `[card]`.
//!
//! The store runs every string it writes through a [`Redactor`] (inputs, outputs, traces,
//! errors, comments, categorical values, corrections, artifact metadata), so no caller can
//! forget it. The model still sees the original text: redaction happens at the store's door.
//!
//! The detectors lean towards precision on the shapes that are common in ordinary text and
//! would be costly to lose (dates, versions, order numbers, prices, short numbers):
//! - **e-mail**: `local@domain.tld`, the usual address characters;
//! - **card**: 13–19 digits, contiguous or in groups separated by single spaces or dashes
//!   (first group of four, later groups of three to six, as cards are printed), Luhn-valid;
//! - **phone**: a number written with a leading `+` (8–15 digits), with an area code in
//!   parentheses, in the North-American shapes `555-123-4567` / `1 555 123 4567` /
//!   `555.123.4567`, in national shapes with a trunk `0` (`020 7946 0958`, `01 23 45 67 89`),
//!   or any 7–15 digits right after a word such as "phone", "tel", "call" or "mobile".
//!   Plain digit strings without such context (order numbers) are left alone.

use std::borrow::Cow;

use regex::Regex;
use serde_json::Value;

/// What replaces an e-mail address.
pub const EMAIL: &str = "[email]";
/// What replaces a phone number.
pub const PHONE: &str = "[phone]";
/// What replaces a payment-card number.
pub const CARD: &str = "[card]";

/// Finds and replaces personal data in text and JSON. Cheap to clone; build one and reuse it.
#[derive(Clone, Debug)]
pub struct Redactor {
    email: Regex,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

impl Redactor {
    /// Compiles the detectors.
    pub fn new() -> Self {
        // A constant pattern, checked by every test in this file: it cannot fail at run time.
        let email =
            Regex::new(r"(?i)[a-z0-9](?:[a-z0-9._%+-]*[a-z0-9_%+-])?@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,24}")
                .expect("the e-mail pattern is valid");
        Redactor { email }
    }

    /// `text` with every e-mail address, card number and phone number replaced. Borrows when
    /// there is nothing to replace.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let has_at = text.contains('@');
        let has_digit = text.bytes().any(|b| b.is_ascii_digit());
        if !has_at && !has_digit {
            return Cow::Borrowed(text);
        }
        let mut out = Cow::Borrowed(text);
        if has_at {
            if let Cow::Owned(s) = self.email.replace_all(&out, EMAIL) {
                out = Cow::Owned(s);
            }
        }
        if has_digit {
            if let Some(s) = replace_numbers(&out, card_spans) {
                out = Cow::Owned(s);
            }
            if let Some(s) = replace_numbers(&out, phone_spans) {
                out = Cow::Owned(s);
            }
        }
        out
    }

    /// `value` with [`Redactor::text`] applied to every string in it, object keys included.
    pub fn json(&self, value: &Value) -> Value {
        let mut value = value.clone();
        self.json_in_place(&mut value);
        value
    }

    /// [`Redactor::json`] without the copy.
    pub fn json_in_place(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Cow::Owned(r) = self.text(s) {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.json_in_place(v)),
            Value::Object(map) => {
                let needs_new_keys = map.keys().any(|k| matches!(self.text(k), Cow::Owned(_)));
                if needs_new_keys {
                    // Rebuild the map so redacted keys keep their values; two keys that redact to
                    // the same text keep both values under numbered keys rather than losing one.
                    let old = std::mem::take(map);
                    for (k, mut v) in old {
                        self.json_in_place(&mut v);
                        let base = self.text(&k).into_owned();
                        let mut key = base.clone();
                        let mut n = 2;
                        while map.contains_key(&key) {
                            key = format!("{base}#{n}");
                            n += 1;
                        }
                        map.insert(key, v);
                    }
                } else {
                    map.values_mut().for_each(|v| self.json_in_place(v));
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

/// A run of digits with the separators between them, as it appears in the text.
#[derive(Debug)]
struct NumberRun {
    /// Byte range of the whole run in the text.
    start: usize,
    end: usize,
    /// Byte ranges of the digit groups, in order.
    groups: Vec<(usize, usize)>,
    /// The run starts with `+`.
    plus: bool,
    /// The run has a parenthesized group.
    parens: bool,
    /// Every separator character used between groups (spaces, `-`, `.`, parentheses).
    seps: Vec<u8>,
}

impl NumberRun {
    fn digits(&self) -> usize {
        self.groups.iter().map(|(s, e)| e - s).sum()
    }

    fn group_lens(&self) -> Vec<usize> {
        self.groups.iter().map(|(s, e)| e - s).collect()
    }
}

/// A byte range of the text and the marker that replaces it.
type Span = (usize, usize, &'static str);

/// Replaces the spans `find` reports in each number run of `text`; `None` when nothing was found.
fn replace_numbers(text: &str, find: fn(&str, &NumberRun) -> Vec<Span>) -> Option<String> {
    let mut spans = Vec::new();
    for run in number_runs(text) {
        spans.extend(find(text, &run));
    }
    if spans.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e, marker) in spans {
        out.push_str(&text[at..s]);
        out.push_str(marker);
        at = e;
    }
    out.push_str(&text[at..]);
    Some(out)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Whether a number may start at byte `i`: not glued to a word or to a larger number
/// (`v1.2`, `ab12`, `3/4`, `ORD-12`).
fn starts_clean(bytes: &[u8], i: usize) -> bool {
    let Some(&p) = i.checked_sub(1).and_then(|j| bytes.get(j)) else { return true };
    let pp = i.checked_sub(2).and_then(|j| bytes.get(j)).copied();
    match p {
        // A `+` before digits starts a phone number wherever it stands (`tel:+44…`, `…0+44 20…`),
        // which also keeps redacting twice from finding anything new.
        _ if bytes[i] == b'+' => true,
        _ if is_word_byte(p) => false,
        // `#123` is an id, whatever follows.
        b'#' => false,
        // `tel:+1…`, `phone:555…`, but not `12:30`.
        b':' => !pp.is_some_and(|c| c.is_ascii_digit()),
        b'.' | b',' | b'/' | b'-' | b'+' => !pp.is_some_and(is_word_byte),
        _ => true,
    }
}

/// Whether a number may end at byte `i` (exclusive): the same test as [`starts_clean`] forwards.
fn ends_clean(bytes: &[u8], i: usize) -> bool {
    let Some(&n) = bytes.get(i) else { return true };
    if is_word_byte(n) {
        return false;
    }
    if matches!(n, b'.' | b',' | b'/' | b':' | b'-') {
        return !bytes.get(i + 1).is_some_and(|b| b.is_ascii_digit());
    }
    true
}

fn digits_at(bytes: &[u8], i: usize) -> usize {
    bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count()
}

/// The maximal number runs of `text` that stand on their own: groups of ASCII digits joined by
/// one separator (` `, `-`, `.`, ` - `) or by parentheses around a group, optionally led by
/// `+`. A run glued to a word or to a larger number is skipped whole.
fn number_runs(text: &str) -> Vec<NumberRun> {
    let bytes = text.as_bytes();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let opens = b.is_ascii_digit()
            || (b == b'+' && (bytes.get(i + 1).is_some_and(|c| c.is_ascii_digit() || *c == b'(')))
            || (b == b'(' && bytes.get(i + 1).is_some_and(|c| c.is_ascii_digit()));
        if !opens {
            i += 1;
            continue;
        }
        if !starts_clean(bytes, i) {
            // Skip the rest of a glued token so that no number starts inside it.
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            continue;
        }
        let start = i;
        let plus = b == b'+';
        if plus {
            i += 1;
        }
        let mut run = NumberRun { start, end: i, groups: Vec::new(), plus, parens: false, seps: Vec::new() };
        loop {
            // One group: digits, or `(digits)`.
            let paren = bytes.get(i) == Some(&b'(');
            let d0 = if paren { i + 1 } else { i };
            let n = digits_at(bytes, d0);
            if n == 0 || (paren && bytes.get(d0 + n) != Some(&b')')) {
                break;
            }
            run.groups.push((d0, d0 + n));
            run.parens |= paren;
            i = d0 + n + usize::from(paren);
            run.end = i;
            // A separator is taken only when a group follows it. Groups touch without one only
            // next to parentheses: `(555)123`, `+44(0)20`.
            let sep = if bytes[i..].starts_with(b" - ") { 3 } else { usize::from(matches!(bytes.get(i), Some(b' ' | b'-' | b'.'))) };
            let j = i + sep;
            let group_follows =
                bytes.get(j).is_some_and(|c| c.is_ascii_digit()) || (bytes.get(j) == Some(&b'(') && bytes.get(j + 1).is_some_and(|c| c.is_ascii_digit()));
            let touching_ok = sep > 0 || paren || bytes.get(j) == Some(&b'(');
            if !group_follows || !touching_ok {
                break;
            }
            run.seps.extend_from_slice(&bytes[i..j]);
            if bytes[j] == b'(' || paren {
                run.seps.push(b'(');
            }
            i = j;
        }
        i = run.end.max(start + 1);
        if !run.groups.is_empty() && ends_clean(bytes, run.end) {
            runs.push(run);
        }
        // A run that ended glued to a word is skipped whole.
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
    }
    runs
}

/// Luhn checksum over ASCII digits.
fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// Card numbers inside a run: a contiguous 13–19 digit group, or consecutive groups printed as
/// cards are (four digits, then groups of three to six) joined by spaces or dashes; Luhn-valid.
fn card_spans(text: &str, run: &NumberRun) -> Vec<Span> {
    if run.plus || run.parens || run.seps.iter().any(|c| !matches!(c, b' ' | b'-')) {
        return Vec::new();
    }
    let bytes = text.as_bytes();
    let lens = run.group_lens();
    let mut spans = Vec::new();
    let mut g = 0;
    while g < run.groups.len() {
        let mut found = None;
        // Longest span first, so `4111 1111 1111 1111` is one card, not a shorter prefix.
        let mut end = run.groups.len();
        while end > g {
            let total: usize = lens[g..end].iter().sum();
            let shaped = if end - g == 1 { true } else { lens[g] == 4 && lens[g + 1..end].iter().all(|n| (3..=6).contains(n)) };
            if (13..=19).contains(&total) && shaped {
                let digits: Vec<u8> = run.groups[g..end].iter().flat_map(|&(s, e)| bytes[s..e].iter().copied()).collect();
                if luhn(&digits) {
                    found = Some(end);
                    break;
                }
            }
            end -= 1;
        }
        match found {
            Some(end) => {
                spans.push((run.groups[g].0, run.groups[end - 1].1, CARD));
                g = end;
            }
            None => g += 1,
        }
    }
    spans
}

/// Words that make the number after them a phone number whatever its shape.
const PHONE_WORDS: &[&str] = &["phone", "tel", "call", "mobile", "cell", "whatsapp", "sms", "text me", "fax", "mob", "dial", "ring me"];

fn phone_context(text: &str, start: usize) -> bool {
    let mut from = start.saturating_sub(24);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    let before = text[from..start].to_ascii_lowercase();
    PHONE_WORDS.iter().any(|w| {
        before.match_indices(w).any(|(at, _)| {
            // Whole words only: "telling" and "recall" are not context; nor is our own marker.
            let left = at.checked_sub(1).map(|j| before.as_bytes()[j]);
            let right = before.as_bytes().get(at + w.len());
            let marker = from + at >= 1 && text.as_bytes()[from + at - 1..].starts_with(PHONE.as_bytes());
            !left.is_some_and(|b| b.is_ascii_alphabetic()) && !right.is_some_and(|b| b.is_ascii_alphabetic()) && !marker
        })
    })
}

fn date_shaped(lens: &[usize]) -> bool {
    matches!(lens, [4, 1 | 2, 1 | 2] | [1 | 2, 1 | 2, 4] | [1 | 2, 1 | 2, 2])
}

/// A phone number: the whole run or nothing (see the module doc for the shapes).
fn phone_spans(text: &str, run: &NumberRun) -> Vec<Span> {
    let digits = run.digits();
    let lens = run.group_lens();
    let first_digit = text.as_bytes()[run.groups[0].0];
    let dotted = run.seps.contains(&b'.');
    let phone = if run.plus {
        (8..=15).contains(&digits)
    } else if run.parens {
        (9..=15).contains(&digits)
    } else if dotted {
        // Dots join versions, IP addresses, dates and prices; only the North-American and
        // French phone shapes are taken.
        run.seps.iter().all(|c| *c == b'.') && (lens == [3, 3, 4] || (first_digit == b'0' && lens == [2, 2, 2, 2, 2]))
    } else if lens.len() > 1 && (lens == [3, 3, 4] || (lens == [1, 3, 3, 4] && first_digit == b'1')) {
        true
    } else if lens.len() > 1 && first_digit == b'0' && lens.len() <= 5 && lens.iter().all(|n| *n >= 2) {
        // A trunk `0` (national) or `00` (international) prefix.
        let international = text.as_bytes().get(run.groups[0].0 + 1) == Some(&b'0');
        (9..=12).contains(&digits) || (international && (10..=15).contains(&digits))
    } else {
        false
    };
    let phone = phone || ((7..=15).contains(&digits) && !date_shaped(&lens) && phone_context(text, run.start));
    if phone {
        vec![(run.start, run.end, PHONE)]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(input: &str, expected: &str) {
        assert_eq!(Redactor::new().text(input), expected, "redacting {input:?}");
    }

    #[test]
    fn email_addresses_in_several_forms_are_redacted() {
        check("write to jane.doe@example.com today", "write to [email] today");
        check("Jane.Doe+tag@Sub.Example.co.uk", "[email]");
        check("<a_b-c@mail-server.example.org>", "<[email]>");
        check("mailto:x9@ex.io, y@ex.de.", "mailto:[email], [email].");
        check("two: a@b.cd b@c.de", "two: [email] [email]");
    }

    #[test]
    fn at_signs_that_are_not_addresses_stay() {
        for text in ["@mention me", "user@localhost", "meet @ 5pm", "a@b", "price @ 3.50 each", "foo@bar.c"] {
            check(text, text);
        }
    }

    #[test]
    fn card_numbers_in_printed_formats_are_redacted() {
        check("card 4111 1111 1111 1111 exp 12/25", "card [card] exp 12/25");
        check("4111-1111-1111-1111", "[card]");
        check("4111111111111111", "[card]");
        check("amex 3782 822463 10005.", "amex [card].");
        check("5555555555554444 and 6011111111111117", "[card] and [card]");
        check("4012888888881881 2025", "[card] 2025");
        check("diners 3056 930902 5904", "diners [card]");
        check("13 digits: 4222222222222", "13 digits: [card]");
    }

    #[test]
    fn digit_strings_that_fail_luhn_or_card_shapes_are_not_cards() {
        for text in [
            "order 4111111111111112",
            "tracking 1Z999AA10123456784",
            "id 123456789012345678901234",
            "12345678 12345678",
            "ref 4111111111111111111111",
            "1 2 3 4 5 6 7 8 9 1 2 3 4",
        ] {
            check(text, text);
        }
    }

    #[test]
    fn phone_numbers_in_several_formats_are_redacted() {
        check("call +1 (555) 123-4567 now", "call [phone] now");
        check("+44 20 7946 0958", "[phone]");
        check("+44 (0)20 7946 0958.", "[phone].");
        check("+33 1 23 45 67 89", "[phone]");
        check("+4915123456789", "[phone]");
        check("(555) 123-4567", "[phone]");
        check("(555)123-4567", "[phone]");
        check("555-123-4567", "[phone]");
        check("555.123.4567", "[phone]");
        check("1 800 555 1234", "[phone]");
        check("020 7946 0958", "[phone]");
        check("07911 123456", "[phone]");
        check("01 23 45 67 89", "[phone]");
        check("01.23.45.67.89", "[phone]");
        check("my phone: 5551234567", "my phone: [phone]");
        check("Tel. 912 345 678", "Tel. [phone]");
        check("call me at 555 1234!", "call me at [phone]!");
        check("numbers: 555-123-4567, +49 30 1234567", "numbers: [phone], [phone]");
        check("Call 555-123-4567 or 555-987-6543.", "Call [phone] or [phone].");
        check("tel:+15551234567", "tel:[phone]");
        check("phone:5551234567", "phone:[phone]");
        check("0049 30 1234567", "[phone]");
        check("+1.555.123.4567", "[phone]");
        check("Mr. jane@doe.org, phone +44 7700 900123; card 5500 0000 0000 0004", "Mr. [email], phone [phone]; card [card]");
    }

    #[test]
    fn dates_versions_order_numbers_and_short_numbers_are_not_phones() {
        for text in [
            "on 2024-01-15 at 10:30",
            "15.01.2024",
            "01/15/2024",
            "due 2024-01-15 10-30",
            "version 1.2.3, v10.15.7, 2.0.0-rc.15",
            "ip 192.168.1.1 and 10.0.0.255",
            "order 123456789 shipped",
            "order #5551234567",
            "ORD-2024-000123",
            "isbn 0-306-40615-2 and 978-3-16-148410-0",
            "42 items, 1234 units, 3 of 10",
            "pages 10-20, rows 100 200 300",
            "a total of 1 000 000 000 units",
            "$1,234,567.89",
            "recall 5551234567 items",
            "call on 2024-01-15",
            "tracking 1Z999AA10123456784",
            "x1234567890",
            "Order #123-456-7890 shipped",
            "between 10 and 20, at 3:45pm on 12/25/2023",
            "SKU 4006381333931 in stock",
            "IBAN DE89 3704 0044 0532 0130 00",
            "12:30:45.123",
            "IP 10.20.30.40 port 8080",
            "score: 0.912 345 678",
            "lat 48.858844, lon 2.294351",
            "uuid 123e4567-e89b-12d3-a456-426614174000",
            "year 2024 and 2025 and 2026",
            "total 1234567890",
            "1-800-FLOWERS",
        ] {
            check(text, text);
        }
    }

    #[test]
    fn text_without_digits_or_at_signs_is_borrowed() {
        assert!(matches!(Redactor::new().text("nothing to see here"), Cow::Borrowed(_)));
        assert!(matches!(Redactor::new().text("version 1.2.3"), Cow::Borrowed(_)));
    }

    #[test]
    fn non_ascii_text_around_numbers_is_kept_intact() {
        check("Grüße, ruf an: +49 30 1234567 — danke", "Grüße, ruf an: [phone] — danke");
        check("Ω4111111111111111", "Ω4111111111111111");
        check("日本 jane@example.jp 東京", "日本 [email] 東京");
    }

    #[test]
    fn every_string_in_json_is_redacted_keys_included() {
        let value = json!({
            "note": "mail jane@example.com",
            "list": ["+44 20 7946 0958", 5, null, {"deep": "4111 1111 1111 1111"}],
            "a@example.com": 1,
            "b@example.com": 2,
            "n": 5551234567u64,
        });
        let out = Redactor::new().json(&value);
        assert_eq!(out["note"], "mail [email]");
        assert_eq!(out["list"], json!(["[phone]", 5, null, {"deep": "[card]"}]));
        // Two keys that redact alike both keep their values.
        let mut kept: Vec<i64> = ["[email]", "[email]#2"].iter().map(|k| out[k].as_i64().unwrap()).collect();
        kept.sort();
        assert_eq!(kept, vec![1, 2]);
        // Numbers are not text: a JSON number is never read as a phone.
        assert_eq!(out["n"], 5551234567u64);
    }

    #[test]
    fn luhn_accepts_valid_and_rejects_altered_numbers() {
        assert!(luhn(b"79927398713"));
        assert!(!luhn(b"79927398710"));
        assert!(luhn(b"4111111111111111"));
        assert!(!luhn(b"4111111111111121"));
    }

    #[test]
    fn redacting_twice_changes_nothing_on_the_cases_proptest_found() {
        let r = Redactor::new();
        for text in [
            "jane@example.com0",
            "+00000000+44 20 7946 0958",
            "+44 20 7946 0958(a#4111 1111 1111 1111",
            "+44 20 7946 0958(日本aaaaaaa+44 20 7946 09580",
            "éfaxé4111 1111 1111 1111",
        ] {
            let once = r.text(text).into_owned();
            assert_eq!(r.text(&once), once, "{text:?}");
            assert!(!once.contains("jane@") && !once.contains("7946"), "{text:?} -> {once:?}");
        }
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        #[test]
        fn redaction_never_panics_and_redacting_twice_changes_nothing(
            parts in proptest::collection::vec(proptest::prop_oneof![
                "[a-z]{1,8}",
                "[0-9]{1,20}",
                "[ .+()@:#/-]",
                proptest::sample::select(vec!["é", "日本", "jane@example.com", "4111 1111 1111 1111", "+44 20 7946 0958", "555-123-4567"]).prop_map(str::to_string),
            ], 0..24)
        ) {
            let text: String = parts.concat();
            let r = Redactor::new();
            let once = r.text(&text).into_owned();
            proptest::prop_assert_eq!(r.text(&once).into_owned(), once.clone());
            proptest::prop_assert!(!once.contains("jane@example.com"));
        }
    }
}
