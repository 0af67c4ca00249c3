//! Fata's docs as a website, rendered on the host at build time.
//!
//! This is a build-time tool (std), used by `apps/www`'s build script: it reads the project's
//! `README.md` and `docs/*.md`, renders each with pulldown-cmark into an HTML page (maud template
//! with a navigation bar and a stylesheet), rewrites links between markdown files into links
//! between pages, and computes each file's content type and ETag. [`write_table`] then writes the
//! files into a build directory with a Rust table of `include_bytes!` entries that a `no_std` app
//! `include!`s, so the site is carried inside the unikernel image as a read-only store; or
//! [`write_dir`] writes them as files (the `fata-site OUT` program), for a FAT image made with
//! `fata disk create` that apps/www serves instead (`--site`).
//!
//! Every internal link on the rendered site resolves: a link to a file the site does not carry is
//! rendered as plain text and reported in [`Rendered::warnings`].
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

pub use fata_http::{content_type, etag};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// The stylesheet every page links to, at `/style.css`.
pub const STYLESHEET: &str = include_str!("style.css");

/// The icon every page names, at `/favicon.svg`.
pub const FAVICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\">\
<rect width=\"32\" height=\"32\" rx=\"6\" fill=\"#14213d\"/>\
<path d=\"M10 7h13v4h-8.5v4H21v4h-6.5v6H10z\" fill=\"#e07a1f\"/></svg>\n";

/// Markdown sources in navigation order, with their short navigation labels; other files of
/// `docs/` follow, sorted by name, labelled by their title.
const ORDER: &[(&str, &str)] = &[
    ("README.md", "Home"),
    ("docs/getting-started.md", "Get started"),
    ("docs/architecture.md", "Architecture"),
    ("docs/app-api.md", "App API"),
    ("docs/hvt.md", "hvt target"),
    ("docs/hvt-abi.md", "hvt ABI"),
    ("docs/virtio.md", "virtio target"),
    ("docs/networking.md", "Networking"),
    ("docs/dns.md", "DNS"),
    ("docs/http.md", "HTTP"),
    ("docs/benchmarks.md", "Benchmarks"),
];

/// One file of the rendered site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteFile {
    /// Its URL path, such as `/docs/hvt.html` (`/index.html` is the home page).
    pub path: String,
    /// Its bytes.
    pub body: Vec<u8>,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its entity tag, quotes included: a hash of the body.
    pub etag: String,
}

/// The rendered site, with what went into it.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// Every file, pages first in navigation order, then the stylesheet and icon.
    pub files: Vec<SiteFile>,
    /// Links that had to be rendered as text because the site does not carry their target.
    pub warnings: Vec<String>,
    /// The files and directories read (for a build script's `rerun-if-changed`).
    pub inputs: Vec<PathBuf>,
}

/// A markdown source and where its page goes.
struct Source {
    /// Path relative to the project root, with `/` separators: `docs/hvt.md`.
    relative: String,
    /// The URL links to it use: `/` for the README, `/docs/hvt.html` otherwise.
    url: String,
    /// The file path it is served at: `/index.html` for the README.
    file: String,
    label: String,
    title: String,
    markdown: String,
}

/// Renders `README.md` and `docs/*.md` under `root` (the project's top directory).
pub fn render(root: &Path) -> io::Result<Rendered> {
    let mut rendered = Rendered::default();
    let docs = root.join("docs");
    rendered.inputs.push(docs.clone());
    let mut names: Vec<String> = vec!["README.md".into()];
    let mut extra: BTreeSet<String> = BTreeSet::new();
    for entry in std::fs::read_dir(&docs)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && entry.file_type()?.is_file() {
            extra.insert(format!("docs/{name}"));
        }
    }
    for (name, _) in &ORDER[1..] {
        if extra.remove(*name) {
            names.push((*name).into());
        }
    }
    names.extend(extra);

    let mut sources = Vec::new();
    for relative in names {
        let path = root.join(&relative);
        let markdown = std::fs::read_to_string(&path)?;
        rendered.inputs.push(path);
        let title = first_heading(&markdown).unwrap_or_else(|| stem(&relative).into());
        let label = ORDER
            .iter()
            .find(|(name, _)| *name == relative)
            .map_or_else(|| title.clone(), |(_, label)| (*label).into());
        let (url, file) = if relative == "README.md" {
            ("/".into(), "/index.html".into())
        } else {
            let page = format!("/docs/{}.html", stem(&relative));
            (page.clone(), page)
        };
        sources.push(Source {
            relative,
            url,
            file,
            label,
            title,
            markdown,
        });
    }

    let assets = ["/style.css", "/favicon.svg"];
    let targets: BTreeMap<&str, &str> = sources
        .iter()
        .map(|s| (s.relative.as_str(), s.url.as_str()))
        .collect();
    let nav: Vec<(&str, &str)> = sources
        .iter()
        .map(|s| (s.url.as_str(), s.label.as_str()))
        .collect();
    for source in &sources {
        let (content, warnings) = markdown_to_html(source, &targets, &assets);
        rendered.warnings.extend(warnings);
        let page = page(source, &nav, &content);
        rendered.files.push(site_file(
            &source.file,
            page.into_string().into_bytes(),
            "text/html; charset=utf-8",
        ));
    }
    rendered.files.push(site_file(
        "/style.css",
        STYLESHEET.as_bytes().to_vec(),
        "text/css; charset=utf-8",
    ));
    rendered.files.push(site_file(
        "/favicon.svg",
        FAVICON.as_bytes().to_vec(),
        "image/svg+xml",
    ));
    Ok(rendered)
}

fn site_file(path: &str, body: Vec<u8>, content_type: &'static str) -> SiteFile {
    SiteFile {
        path: path.into(),
        etag: etag(&body),
        body,
        content_type,
    }
}

fn stem(relative: &str) -> &str {
    let name = relative.rsplit('/').next().unwrap_or(relative);
    name.strip_suffix(".md").unwrap_or(name)
}

fn options() -> Options {
    Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS
}

/// The text of the first level-1 heading.
fn first_heading(markdown: &str) -> Option<String> {
    let mut in_h1 = false;
    let mut text = String::new();
    for event in Parser::new_ext(markdown, options()) {
        match event {
            Event::Start(Tag::Heading {
                level: HeadingLevel::H1,
                ..
            }) => in_h1 = true,
            Event::End(TagEnd::Heading(HeadingLevel::H1)) => return Some(text),
            Event::Text(t) | Event::Code(t) if in_h1 => text.push_str(&t),
            _ => {}
        }
    }
    None
}

/// A heading's anchor, GitHub style: lower case, spaces to `-`, punctuation dropped.
fn slug(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// Where a link in `source` points on the site, or `None` when the site does not carry it.
fn resolve(
    source: &Source,
    dest: &str,
    targets: &BTreeMap<&str, &str>,
    assets: &[&str],
) -> Option<String> {
    let external = dest.contains("://") || dest.starts_with("mailto:");
    if dest.is_empty() || dest.starts_with('#') || external {
        return Some(dest.into());
    }
    let (path, fragment) = match dest.split_once('#') {
        Some((path, fragment)) => (path, Some(fragment)),
        None => (dest, None),
    };
    let url = if let Some(absolute) = path.strip_prefix('/') {
        let known = assets.contains(&path) || targets.values().any(|url| *url == path);
        if known {
            path.to_string()
        } else {
            (*targets.get(absolute)?).to_string()
        }
    } else {
        let dir = source.relative.rsplit_once('/').map_or("", |(dir, _)| dir);
        let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop()?;
                }
                part => parts.push(part),
            }
        }
        (*targets.get(parts.join("/").as_str())?).to_string()
    };
    Some(match fragment {
        Some(fragment) => format!("{url}#{fragment}"),
        None => url,
    })
}

/// The page body for `source`, and warnings about links rendered as text.
fn markdown_to_html(
    source: &Source,
    targets: &BTreeMap<&str, &str>,
    assets: &[&str],
) -> (String, Vec<String>) {
    let mut warnings = Vec::new();
    let mut events: Vec<Event<'_>> = Vec::new();
    let mut dropped_links = 0usize;
    let mut heading: Option<(HeadingLevel, Vec<Event<'_>>)> = None;
    let mut used_slugs: BTreeMap<String, usize> = BTreeMap::new();
    for event in Parser::new_ext(&source.markdown, options()) {
        let event = match event {
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => match resolve(source, &dest_url, targets, assets) {
                Some(url) => Event::Start(Tag::Link {
                    link_type,
                    dest_url: CowStr::from(url),
                    title,
                    id,
                }),
                None => {
                    warnings.push(format!(
                        "{}: the site has no page for the link {:?}; it is rendered as text",
                        source.relative, &*dest_url
                    ));
                    dropped_links += 1;
                    continue;
                }
            },
            Event::End(TagEnd::Link) if dropped_links > 0 => {
                dropped_links -= 1;
                continue;
            }
            other => other,
        };
        match (&mut heading, event) {
            (None, Event::Start(Tag::Heading { level, .. })) => heading = Some((level, Vec::new())),
            (Some(_), Event::End(TagEnd::Heading(_))) => {
                let (level, inner) = heading.take().unwrap_or((HeadingLevel::H1, Vec::new()));
                let text: String = inner
                    .iter()
                    .filter_map(|e| match e {
                        Event::Text(t) | Event::Code(t) => Some(t.as_ref()),
                        _ => None,
                    })
                    .collect();
                let base = slug(&text);
                let count = used_slugs.entry(base.clone()).or_insert(0);
                let id = if *count == 0 {
                    base
                } else {
                    format!("{base}-{count}")
                };
                *count += 1;
                events.push(Event::Start(Tag::Heading {
                    level,
                    id: Some(CowStr::from(id)),
                    classes: Vec::new(),
                    attrs: Vec::new(),
                }));
                events.extend(inner);
                events.push(Event::End(TagEnd::Heading(level)));
            }
            (Some((_, inner)), event) => inner.push(event),
            (None, event) => events.push(event),
        }
    }
    let mut html = String::with_capacity(source.markdown.len() * 2);
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    (html, warnings)
}

/// The whole HTML page: head, navigation bar, content, footer.
fn page(source: &Source, nav: &[(&str, &str)], content: &str) -> Markup {
    let title = if source.url == "/" {
        "Fata: a library OS in Rust".to_string()
    } else {
        format!("{} · Fata", source.title)
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href="/style.css";
                link rel="icon" type="image/svg+xml" href="/favicon.svg";
            }
            body {
                header.top {
                    nav {
                        a.brand href="/" { "Fata" }
                        @for (url, label) in nav.iter().skip(1) {
                            @if *url == source.url {
                                a.current href=(url) aria-current="page" { (label) }
                            } @else {
                                a href=(url) { (label) }
                            }
                        }
                    }
                }
                main { (PreEscaped(content)) }
                footer {
                    "Rendered from " code { (source.relative) } " when the image was built, and served by "
                    code { "fata-http" } " over Fata's own TCP/IP stack."
                }
            }
        }
    }
}

/// The two files bench/http.py asks every server for: `/bench/2k.html`, a 2 KB page, and
/// `/bench/200k.bin`, 200 KB of fixed pseudo-random bytes. Generated, not read, so the image and
/// the benchmark always agree on them.
pub fn benchmark_files() -> Vec<SiteFile> {
    let mut page = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Fata benchmark page</title>\
         </head><body><h1>A 2 KB page</h1>\n",
    );
    let mut line = 0;
    while page.len() < 2048 - 40 {
        page.push_str(&format!(
            "<p>Line {line} of the page bench/http serves.</p>\n"
        ));
        line += 1;
    }
    page.push_str("</body></html>\n");
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let blob: Vec<u8> = (0..200 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    [
        ("/bench/2k.html", page.into_bytes()),
        ("/bench/200k.bin", blob),
    ]
    .into_iter()
    .map(|(path, body)| SiteFile {
        path: path.to_string(),
        content_type: content_type(path),
        etag: etag(&body),
        body,
    })
    .collect()
}

/// Writes `rendered`'s files into `dir`, each at its URL path (`/docs/hvt.html` becomes
/// `DIR/docs/hvt.html`), as a directory `fata disk create` makes an image of, for apps/www to serve
/// with `--site` (it takes content types and ETags from the paths and bytes, as here).
pub fn write_dir(rendered: &Rendered, dir: &Path) -> io::Result<()> {
    for file in &rendered.files {
        let relative = file.path.trim_start_matches('/');
        if relative
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(io::Error::other(format!(
                "{:?} is not a file's path",
                file.path
            )));
        }
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        write_if_changed(&path, &file.body)?;
    }
    Ok(())
}

/// Writes `rendered`'s files into `dir` and, beside them, `site.rs`: a table
/// `pub static SITE: &[fata_http::File<'static>]` whose bodies are `include_bytes!` of those
/// files. Returns the path of `site.rs`.
pub fn write_table(rendered: &Rendered, dir: &Path) -> io::Result<PathBuf> {
    let files_dir = dir.join("site");
    std::fs::create_dir_all(&files_dir)?;
    let mut table = String::from(
        "/// The site's files, rendered from the project's docs by fata-site at build time.\n\
         pub static SITE: &[fata_http::File<'static>] = &[\n",
    );
    for (index, file) in rendered.files.iter().enumerate() {
        let path = files_dir.join(format!("{index}.bin"));
        write_if_changed(&path, &file.body)?;
        let path = path
            .to_str()
            .ok_or_else(|| io::Error::other("the build directory's path is not UTF-8"))?;
        // Writing into a String cannot fail.
        let _ = writeln!(
            table,
            "    fata_http::File {{ path: {:?}, body: include_bytes!({:?}), content_type: {:?}, etag: {:?} }},",
            file.path, path, file.content_type, file.etag
        );
    }
    table.push_str("];\n");
    let table_path = dir.join("site.rs");
    write_if_changed(&table_path, table.as_bytes())?;
    Ok(table_path)
}

/// Writes `bytes` to `path` unless it already holds them, so unchanged files keep their times.
fn write_if_changed(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests;
