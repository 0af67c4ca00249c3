use super::*;

fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn page<'r>(rendered: &'r Rendered, path: &str) -> &'r str {
    let file = rendered.files.iter().find(|f| f.path == path).unwrap();
    std::str::from_utf8(&file.body).unwrap()
}

#[test]
fn pages_have_navigation_styles_and_rewritten_links() {
    let dir = project(&[
        (
            "README.md",
            "# Fata\n\nSee [the API](docs/app-api.md#entry) and [x](https://example.com).\n",
        ),
        (
            "docs/app-api.md",
            "# The app API\n\n## Entry\n\nBack [home](../README.md), [hvt](hvt.md).\n\n## Entry\n",
        ),
        (
            "docs/hvt.md",
            "# hvt\n\n[missing](benchmarks.md) and [code](../crates/x.rs)\n",
        ),
    ]);
    let rendered = render(dir.path()).unwrap();
    let paths: Vec<&str> = rendered.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/index.html",
            "/docs/app-api.html",
            "/docs/hvt.html",
            "/style.css",
            "/favicon.svg"
        ]
    );
    let home = page(&rendered, "/index.html");
    assert!(home.starts_with("<!DOCTYPE html>"), "{home}");
    assert!(
        home.contains(r#"href="/docs/app-api.html#entry""#),
        "{home}"
    );
    assert!(home.contains(r#"href="https://example.com""#));
    assert!(
        home.contains(r#"<a href="/docs/app-api.html">App API</a>"#),
        "{home}"
    );
    assert!(home.contains(r#"href="/style.css""#));
    let api = page(&rendered, "/docs/app-api.html");
    assert!(api.contains(r#"<h2 id="entry">"#), "{api}");
    assert!(api.contains(r#"<h2 id="entry-1">"#), "{api}");
    assert!(api.contains(r#"href="/""#) && api.contains(r#"href="/docs/hvt.html""#));
    assert!(api.contains(r#"class="current""#));
    let hvt = page(&rendered, "/docs/hvt.html");
    assert!(!hvt.contains("benchmarks") || !hvt.contains("href=\"benchmarks"));
    assert!(hvt.contains("missing") && hvt.contains("code"));
    assert_eq!(rendered.warnings.len(), 2, "{:?}", rendered.warnings);
    for file in &rendered.files {
        assert_eq!(file.etag, etag(&file.body));
    }
}

#[test]
fn tables_are_written_for_include_bytes() {
    let dir = project(&[("README.md", "# Home\n")]);
    let rendered = render(dir.path()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let table = write_table(&rendered, out.path()).unwrap();
    let text = std::fs::read_to_string(table).unwrap();
    assert!(text.contains("pub static SITE: &[fata_http::File<'static>]"));
    assert!(text.contains("path: \"/index.html\""));
    assert!(text.contains("include_bytes!("));
    assert_eq!(text.matches("fata_http::File {").count(), 3);
}

#[test]
fn etags_and_types() {
    assert_eq!(etag(b""), "\"cbf29ce484222325\"");
    assert_ne!(etag(b"a"), etag(b"b"));
    assert_eq!(content_type("a/b.css"), "text/css; charset=utf-8");
    assert_eq!(content_type("x"), "application/octet-stream");
    assert_eq!(slug("The `fata` command!"), "the-fata-command");
}

#[test]
fn the_site_is_written_as_files_at_their_paths() {
    let dir = project(&[
        ("README.md", "# Fata\n\nSee [hvt](docs/hvt.md).\n"),
        ("docs/hvt.md", "# hvt\n"),
    ]);
    let rendered = render(dir.path()).unwrap();
    let out = tempfile::tempdir().unwrap();
    write_dir(&rendered, out.path()).unwrap();
    for file in &rendered.files {
        let written = std::fs::read(out.path().join(&file.path[1..])).unwrap();
        assert_eq!(written, file.body, "{}", file.path);
    }
    assert!(out.path().join("docs/hvt.html").is_file());
    assert!(out.path().join("index.html").is_file());
    let bad = Rendered {
        files: vec![SiteFile {
            path: "/../escape".into(),
            body: Vec::new(),
            content_type: "text/plain",
            etag: etag(b""),
        }],
        ..Rendered::default()
    };
    assert!(write_dir(&bad, out.path()).is_err());
}
