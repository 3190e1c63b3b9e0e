//! Keeping credentials out of error messages. Webhook URLs often are
//! credentials: Slack's `/services/T…/B…/XXXX`, user info
//! (`https://user:password@host`), tokens in query strings
//! (`?token=…`) or path segments. Every configuration error goes through
//! [`redact_text`] before anyone sees it (`phimon check-config` and
//! `phimon run` print the same errors).

/// `url` as safe to print: its scheme and host (and port) only, the
/// rest replaced by `…`; `<redacted>` when it has no `scheme://`.
///
/// ```
/// use phimon_config::redact_url;
/// assert_eq!(
///     redact_url("https://hooks.slack.com/services/T000/B000/XXXX"),
///     "https://hooks.slack.com/…"
/// );
/// assert_eq!(redact_url("https://u:pw@h:8443/x?token=1"), "https://h:8443/…");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<redacted>".into();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    format!("{scheme}://{host}/…")
}

/// Characters that end a URL inside a message (quotes and brackets of
/// the message around it, whitespace).
fn ends_url(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '`' | '<' | '>' | '(' | ')' | '[' | ']' | ','
        )
}

/// `text` with every `scheme://…` URL in it replaced by
/// [`redact_url`], and the value of every `url = …` line of a quoted
/// TOML snippet (what a syntax error shows) replaced by `<redacted>`,
/// since a URL without a scheme is no less a secret.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&redact_line(line));
    }
    out
}

fn redact_line(line: &str) -> String {
    // A TOML snippet line: "12 | url = ..." (toml's error excerpt), or a
    // bare "url = ..." line.
    let (prefix, body) = match line.find("| ") {
        Some(i) if line[..i].trim().chars().all(|c| c.is_ascii_digit()) => line.split_at(i + 2),
        _ => ("", line),
    };
    let key = body.trim_start();
    if let Some(rest) = key.strip_prefix("url") {
        if rest.trim_start().starts_with('=') {
            let indent = &body[..body.len() - key.len()];
            return format!("{prefix}{indent}url = <redacted>");
        }
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("://") {
        // The scheme starts after the last character that cannot be in
        // one (which may be several bytes long).
        let scheme_start = rest[..at]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let end = rest[at..].find(ends_url).map_or(rest.len(), |e| at + e);
        out.push_str(&rest[..scheme_start]);
        out.push_str(&redact_url(&rest[scheme_start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_only_scheme_and_host() {
        for (url, want) in [
            (
                "https://hooks.slack.com/services/T0123/B0456/abcdEFGH",
                "https://hooks.slack.com/…",
            ),
            (
                "https://user:secret@example.invalid/hook",
                "https://example.invalid/…",
            ),
            ("https://a:b@c@host:9/p?q=1#f", "https://host:9/…"),
            ("http://am:9093/api/v2/alerts?token=x", "http://am:9093/…"),
            ("https://host", "https://host/…"),
            ("hooks.slack.com/services/T/B/X", "<redacted>"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn a_multibyte_character_before_a_scheme_is_kept_whole() {
        assert_eq!(redact_text("¥¥g¯://h/secret"), "¥¥g¯://h/…");
        assert_eq!(redact_text("¯https://h/secret"), "¯https://h/…");
    }

    #[test]
    fn text_keeps_its_words_and_loses_its_secrets() {
        let t = redact_text(
            "alert.webhook[0].url: \"http://u:pw@h/services/T/B/XXXX?token=abc\" is plain http\n\
             see https://docs.example/x, or (ftp://a/b)",
        );
        assert_eq!(
            t,
            "alert.webhook[0].url: \"http://h/…\" is plain http\n\
             see https://docs.example/…, or (ftp://a/…)"
        );
        // A TOML excerpt of a syntax error: the line's value is dropped
        // whatever it looks like.
        let t = redact_text(
            "TOML parse error at line 3, column 7\n  |\n3 | url = hooks.slack.com/services/T/B/XXXX\n  |       ^\n",
        );
        assert!(!t.contains("XXXX") && !t.contains("services"), "{t}");
        assert!(t.contains("3 | url = <redacted>"), "{t}");
        assert_eq!(redact_text("no url here"), "no url here");
    }
}
