//! The website end to end: apps/www serves the project's docs from a unikernel (and as a process)
//! over a tap device in a network namespace; every page is fetched and every internal link
//! followed, the protocol's corners and abuse are checked, 1,000 connections are held at once,
//! and a headless Chromium renders the home page. The same site, rendered into a directory and
//! made into a FAT image by `fata disk create`, is served from the image with `--site`.

mod common;

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Netns, Running, build, text};

const TIMEOUT: Duration = Duration::from_secs(10);

/// One parsed response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn body_text(&self) -> String {
        text(&self.body)
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Reads one response; `None` when the connection ends before a status line arrives.
fn read_response(reader: &mut impl BufRead, head_only: bool) -> Option<Response> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("a header line");
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if !head_only && status != 304 {
        let length: usize = response
            .header("content-length")
            .expect("Content-Length")
            .parse()
            .unwrap();
        response.body.resize(length, 0);
        reader.read_exact(&mut response.body).unwrap();
    }
    Some(response)
}

/// Sends `request` on a new connection and reads the response.
fn exchange(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = connect(addr);
    stream.write_all(request).unwrap();
    let head_only = request.starts_with(b"HEAD ");
    read_response(&mut BufReader::new(stream), head_only).expect("a response")
}

fn get(addr: SocketAddr, path: &str) -> Response {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: fata\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The values of `href="..."` and `src="..."` attributes in a page.
fn links(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["href=\"", "src=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attribute) {
            rest = &rest[at + attribute.len()..];
            let end = rest.find('"').unwrap();
            found.push(rest[..end].replace("&amp;", "&"));
            rest = &rest[end..];
        }
    }
    found
}

/// Fetches every page reachable from `/` on one keep-alive connection, checking status and
/// content type, and that every internal link resolves; returns the paths fetched.
fn crawl(addr: SocketAddr) -> BTreeSet<String> {
    let mut stream = connect(addr);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut seen = BTreeSet::from(["/".to_string()]);
    let mut queue = VecDeque::from(["/".to_string()]);
    while let Some(path) = queue.pop_front() {
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: fata\r\n\r\n").as_bytes())
            .unwrap();
        let response = read_response(&mut reader, false).expect("a response while crawling");
        assert_eq!(response.status, 200, "GET {path}: {response:?}");
        let content_type = response.header("content-type").unwrap_or_default();
        let expected = match path.rsplit_once('.').map(|(_, ext)| ext) {
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            _ => "text/html; charset=utf-8",
        };
        assert_eq!(content_type, expected, "Content-Type of {path}");
        assert!(response.header("etag").is_some_and(|e| e.starts_with('"')));
        assert!(response.header("date").is_some_and(|d| d.ends_with(" GMT")));
        if !content_type.starts_with("text/html") {
            continue;
        }
        let html = response.body_text();
        assert!(
            html.contains(r#"<link rel="stylesheet" href="/style.css">"#),
            "{path}"
        );
        assert!(html.contains("<nav>"), "{path} has a navigation bar");
        for link in links(&html) {
            if link.contains("://") || link.starts_with("mailto:") || link.starts_with('#') {
                continue;
            }
            assert!(link.starts_with('/'), "{path}: relative link {link:?}");
            let target = link.split('#').next().unwrap().to_string();
            if seen.insert(target.clone()) {
                queue.push_back(target);
            }
        }
    }
    seen
}

/// ETags, HEAD, keep-alive with pipelining, and the error answers.
fn check_protocol(addr: SocketAddr) {
    let page = get(addr, "/docs/networking.html");
    let etag = page.header("etag").unwrap().to_string();
    let not_modified = exchange(
        addr,
        format!(
            "GET /docs/networking.html HTTP/1.1\r\nHost: fata\r\nIf-None-Match: {etag}\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));

    let head = exchange(
        addr,
        b"HEAD /docs/networking.html HTTP/1.1\r\nHost: fata\r\n\r\n",
    );
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length").unwrap(),
        page.body.len().to_string()
    );

    // Three requests in one write: three responses, in order, on the same connection.
    let mut stream = connect(addr);
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: fata\r\n\r\nHEAD /style.css HTTP/1.1\r\nHost: fata\r\n\r\n\
              GET /missing HTTP/1.1\r\nHost: fata\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let first = read_response(&mut reader, false).unwrap();
    let second = read_response(&mut reader, true).unwrap();
    let third = read_response(&mut reader, false).unwrap();
    assert_eq!([first.status, second.status, third.status], [200, 200, 404]);
    assert!(first.body_text().contains("<nav>"));
    assert_eq!(
        second.header("content-type"),
        Some("text/css; charset=utf-8")
    );
    // Still open: one more request on the same connection.
    stream
        .write_all(b"GET /style.css HTTP/1.1\r\nHost: fata\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut reader, false).unwrap().status, 200);

    let long_target = format!("GET /{} HTTP/1.1\r\nHost: fata\r\n\r\n", "a".repeat(5000));
    let big_headers = format!(
        "GET / HTTP/1.1\r\nHost: fata\r\n{}\r\n",
        "X-Filler: 0123456789abcdef0123456789abcdef0123456789\r\n".repeat(200)
    );
    let cases: [(&[u8], u16); 7] = [
        (b"GET /nope.html HTTP/1.1\r\nHost: fata\r\n\r\n", 404),
        (
            b"POST / HTTP/1.1\r\nHost: fata\r\nContent-Length: 2\r\n\r\nhi",
            405,
        ),
        (long_target.as_bytes(), 414),
        (big_headers.as_bytes(), 431),
        (
            b"GET / HTTP/1.1\r\nHost: fata\r\nContent-Length: 100000\r\n\r\n",
            413,
        ),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"BLAH\x01\x02 / HTTP/1.1\r\n\r\n", 400),
    ];
    for (request, status) in cases {
        let response = exchange(addr, request);
        assert_eq!(response.status, status, "{:?}", text(&request[..20]));
        let body = response.body_text();
        assert!(
            body.starts_with(&status.to_string()) && body.len() < 200,
            "{status}: {body:?}"
        );
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
}

/// Whether the server answers `request` with one of `statuses` or cuts the connection (reading
/// gives an end or an error within the timeout); false when it does neither.
fn answered_or_cut_off(mut stream: TcpStream, request: &[u8], statuses: &[u16]) -> bool {
    // The server may stop reading and close before everything is written; that is an answer too.
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = stream.write_all(request);
    // Nothing more is coming: a request cut short ends here rather than at the server's timeout.
    let _ = stream.shutdown(Shutdown::Write);
    let mut reader = BufReader::new(stream);
    match read_response(&mut reader, false) {
        Some(response) => statuses.contains(&response.status),
        None => true,
    }
}

/// Garbage, 100 KB of headers and slow clients get the right answer or are cut off, and the
/// server goes on serving.
fn check_abuse(addr: SocketAddr) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..20 {
        let garbage: Vec<u8> = (0..(round * 397 % 3000 + 1))
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        assert!(
            answered_or_cut_off(connect(addr), &garbage, &[400, 414, 431]),
            "garbage {round}"
        );
    }
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: fata\r\nX-Huge: {}\r\n\r\n",
        "h".repeat(100 * 1024)
    );
    assert!(answered_or_cut_off(connect(addr), huge.as_bytes(), &[431]));

    // One byte every 100 ms: a short request still gets its page...
    let slow = |request: &[u8]| {
        let mut stream = connect(addr);
        let started = Instant::now();
        for byte in request {
            if stream.write_all(&[*byte]).is_err() || answer_waiting(&stream) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let response = read_response(&mut BufReader::new(stream), false);
        (response, started.elapsed())
    };
    let (response, _) = slow(b"GET / HTTP/1.1\r\nHost: f\r\n\r\n");
    assert_eq!(response.expect("a response to a slow client").status, 200);
    // ...but one that never finishes is cut off with 408 once its time is up (5 s).
    let endless = format!("GET / HTTP/1.1\r\nHost: fata\r\nX-Slow: {}", "s".repeat(70));
    let (response, took) = slow(endless.as_bytes());
    assert_eq!(response.expect("408 for a too slow client").status, 408);
    assert!(took < Duration::from_secs(9), "cut off after {took:?}");

    // A client that connects and says nothing does not stop others.
    let _silent = connect(addr);
    assert_eq!(get(addr, "/").status, 200);
}

/// Whether the server has sent something (or closed) on `stream`.
fn answer_waiting(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let waiting =
        !matches!(stream.peek(&mut [0]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    waiting
}

/// Holds `count` connections open at once, then asks for a page on each.
fn check_many_connections(addr: SocketAddr, count: usize) {
    let started = Instant::now();
    let mut streams: Vec<TcpStream> = (0..count).map(|_| connect(addr)).collect();
    for stream in &mut streams {
        // A burst this large can cost a few retransmissions (1 s, then 3 s) on the way.
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
            .write_all(b"GET /style.css HTTP/1.1\r\nHost: fata\r\n\r\n")
            .unwrap();
    }
    for (i, stream) in streams.into_iter().enumerate() {
        let response = read_response(&mut BufReader::new(stream), false)
            .unwrap_or_else(|| panic!("connection {i} closed"));
        assert_eq!(response.status, 200, "connection {i}");
    }
    println!(
        "{count} concurrent connections served in {:?}",
        started.elapsed()
    );
}

/// Fetches `path` `count` times on one keep-alive connection; returns requests per second.
fn sequential_rate(addr: SocketAddr, path: &str, count: usize) -> f64 {
    let mut stream = connect(addr);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let request = format!("GET {path} HTTP/1.1\r\nHost: fata\r\n\r\n");
    let started = Instant::now();
    for _ in 0..count {
        stream.write_all(request.as_bytes()).unwrap();
        assert_eq!(read_response(&mut reader, false).unwrap().status, 200);
    }
    let _ = stream.shutdown(Shutdown::Both);
    count as f64 / started.elapsed().as_secs_f64()
}

/// Loads `url` in a headless Chromium inside the namespace, checks the screenshot is a rendered
/// page (not blank, the navigation bar styled) and keeps it under target/ for people to look at.
fn check_browser(ns: &Netns, url: &str, name: &str) {
    if !fata_testkit::program("chromium", "chromium") {
        return;
    }
    let profile = tempfile::tempdir().unwrap();
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.png"));
    let _ = std::fs::remove_file(&shot);
    let mut child = ns
        .command("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .args(["--window-size=1280,900", url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (width, height, pixels) = decode_png(&shot);
    assert_eq!((width, height), (1280, 900));
    let luma: Vec<f64> = pixels
        .chunks(3)
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect();
    let mean = luma.iter().sum::<f64>() / luma.len() as f64;
    let variance = luma.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / luma.len() as f64;
    assert!(
        variance > 100.0,
        "the screenshot is blank (variance {variance:.1})"
    );
    // The stylesheet's dark navigation bar fills the top-left corner.
    let corner = &pixels[(10 * width as usize + 10) * 3..][..3];
    assert!(
        corner.iter().all(|&c| c < 80),
        "no styled navigation bar at the top: {corner:?}"
    );
    let kept = keep_screenshot(&shot, name);
    println!(
        "screenshot of {url}: {} (luma variance {variance:.0})",
        kept.display()
    );
}

/// Width, height and RGB bytes of a PNG file.
fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let file = std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("chromium left no screenshot at {}: {e}", path.display()));
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let channels = info.color_type.samples();
    let rgb = buf
        .chunks(channels)
        .flat_map(|p| match channels {
            1 | 2 => [p[0], p[0], p[0]],
            _ => [p[0], p[1], p[2]],
        })
        .collect();
    (info.width, info.height, rgb)
}

/// Copies the screenshot to `target/NAME.png` (beside the build's tmp directory).
fn keep_screenshot(shot: &Path, name: &str) -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join(format!("{name}.png"));
    std::fs::copy(shot, &target).unwrap();
    target
}

fn start_www(ns: &Netns, target: &str, extra: &[&str], app: &[&str]) -> Running {
    let ipv4 = format!("{}/24", ns.guest());
    let mut command = ns.fata();
    command
        .args(["run", "--release", "--target", target, "apps/www"])
        .args(extra)
        .args(["--net", "tap0", "--", "--ipv4", &ipv4])
        .args(app);
    Running::start(command, "www: serving")
}

/// A page only the image has, under a long name with spaces.
const DISK_PAGE: &str = "/from the disk/a page with a long name.html";

/// The docs rendered into a directory (as `fata-site OUT` writes them), with [`DISK_PAGE`] added,
/// made into a FAT image by `fata disk create`; returns the image and the page's body.
fn site_image(dir: &Path) -> (PathBuf, Vec<u8>) {
    let site = dir.join("site");
    let mut rendered = fata_site::render(&common::workspace()).unwrap();
    rendered.files.extend(fata_site::benchmark_files());
    fata_site::write_dir(&rendered, &site).unwrap();
    let page = b"<!doctype html><title>disk</title><h1>Served from a FAT image</h1>\n".to_vec();
    let host = site.join(&DISK_PAGE[1..]);
    std::fs::create_dir_all(host.parent().unwrap()).unwrap();
    std::fs::write(&host, &page).unwrap();
    let image = dir.join("site.img");
    let out = common::fata(&[
        "disk",
        "create",
        site.to_str().unwrap(),
        "-o",
        image.to_str().unwrap(),
        "--label",
        "FATA SITE",
    ]);
    assert!(
        out.status.success(),
        "fata disk create: {}",
        text(&out.stderr)
    );
    (image, page)
}

/// What only a site served from the image answers: the page the image adds, with its type and
/// ETag, and the docs crawled in full.
fn check_site_from_image(addr: SocketAddr, page: &[u8]) {
    crawl(addr);
    let response = get(addr, &DISK_PAGE.replace(' ', "%20"));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body, page);
    assert_eq!(
        response.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        response.header("etag"),
        Some(fata_site::etag(page).as_str())
    );
    let bench = get(addr, "/bench/200k.bin");
    assert_eq!(bench.status, 200);
    assert_eq!(bench.body.len(), 200 * 1024);
}

#[test]
fn www_on_hvt_serves_the_docs() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("www", 66) else {
        return;
    };
    build("apps/www", "hvt");
    // 1,000 connections with their socket buffers take about 50 MiB of heap.
    let mut app = start_www(&ns, "hvt", &["--mem", "128M"], &[]);
    let addr = SocketAddr::from((ns.guest(), 80));
    let pages = ns.run(|| {
        let pages = crawl(addr);
        check_protocol(addr);
        check_abuse(addr);
        check_many_connections(addr, 1000);
        let rate = sequential_rate(addr, "/", 2000);
        println!("one keep-alive connection: {rate:.0} requests/s for the home page");
        pages
    });
    println!("crawled {} files: {pages:?}", pages.len());
    for page in [
        "/",
        "/docs/app-api.html",
        "/docs/hvt-abi.html",
        "/docs/networking.html",
    ] {
        assert!(pages.contains(page), "{page} is not linked from the site");
    }
    check_browser(&ns, &format!("http://{}/", ns.guest()), "www-home");
    assert!(app.is_running(), "the unikernel stopped");
    ns.run(|| assert_eq!(get(addr, "/").status, 200));
}

/// The website over an IPv6-only link: the crawl and the protocol checks, curl (the real
/// client, with the address in brackets) and Chromium.
#[test]
fn www_on_hvt_serves_the_docs_over_ipv6() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("www6", 91).map(Netns::ipv6_only) else {
        return;
    };
    build("apps/www", "hvt");
    let ipv6 = format!("{}/64", ns.guest6());
    let mut command = ns.fata();
    command
        .args([
            "run",
            "--release",
            "--target",
            "hvt",
            "apps/www",
            "--mem",
            "64M",
        ])
        .args(["--net", "tap0", "--", "--ipv4", "off", "--ipv6", &ipv6]);
    let mut app = Running::start(command, "www: serving");
    assert!(
        app.ready_line.contains(&format!("on {ipv6}, ")),
        "{}",
        app.ready_line
    );
    let addr = SocketAddr::from((ns.guest6(), 80));
    ns.run(|| {
        crawl(addr);
        check_protocol(addr);
    });
    let url = format!("http://[{}]/docs/networking.html", ns.guest6());
    let out = ns
        .command("curl")
        .args([
            "--silent",
            "--show-error",
            "--fail",
            "--max-time",
            "10",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {url}: {}",
        common::text(&out.stderr)
    );
    assert!(common::text(&out.stdout).contains("Networking</h1>"));
    check_browser(&ns, &format!("http://[{}]/", ns.guest6()), "www-home-ipv6");
    assert!(app.is_running(), "the unikernel stopped");
}

#[test]
fn www_on_unix_direct_serves_the_docs() {
    let Some(ns) = Netns::create("wwwunix", 67) else {
        return;
    };
    build("apps/www", "unix");
    let mut app = start_www(&ns, "unix", &[], &[]);
    let addr = SocketAddr::from((ns.guest(), 80));
    ns.run(|| {
        crawl(addr);
        check_protocol(addr);
    });
    assert!(app.is_running(), "the app stopped");
}

#[test]
fn www_on_hvt_serves_a_site_from_a_fat_image() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("wwwfat", 73) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (image, page) = site_image(dir.path());
    build("apps/www", "hvt");
    let kv = format!("site={}", image.display());
    let mut app = start_www(&ns, "hvt", &["--kv", &kv], &["--site", "site"]);
    assert!(
        app.ready_line.contains("from store site on"),
        "{}",
        app.ready_line
    );
    let addr = SocketAddr::from((ns.guest(), 80));
    ns.run(|| check_site_from_image(addr, &page));
    assert!(app.is_running(), "the unikernel stopped");
    drop(app); // frees tap0

    // A damaged image stops the monitor before the guest boots, with the key-value exit status.
    let cut = dir.path().join("cut.img");
    let bytes = std::fs::read(&image).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = ns
        .fata()
        .args([
            "run",
            "--release",
            "--target",
            "hvt",
            "apps/www",
            "--net",
            "tap0",
        ])
        .args([
            "--kv",
            &format!("site={}", cut.display()),
            "--",
            "--site",
            "site",
        ])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    let kv_status = fata_monitor::EXIT_CODES
        .iter()
        .find(|(_, what)| what.contains("key-value"))
        .map(|(code, _)| i32::from(*code));
    assert_eq!(out.status.code(), kv_status, "{stderr}");
    assert!(
        stderr.contains("cannot set up key-value store site")
            && stderr.contains("cut.img is damaged"),
        "{stderr}"
    );
}

#[test]
fn www_on_unix_serves_a_site_from_a_fat_image() {
    let dir = tempfile::tempdir().unwrap();
    let (image, page) = site_image(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kv = format!("site={}", image.display());
    let port_arg = port.to_string();
    let command = common::fata_command(&[
        "run",
        "--release",
        "--target",
        "unix",
        "apps/www",
        "--kv",
        &kv,
        "--",
        "--site",
        "site",
        "--port",
        &port_arg,
    ]);
    let mut app = Running::start(command, "www: serving");
    assert!(
        app.ready_line.contains("from store site on"),
        "{}",
        app.ready_line
    );
    check_site_from_image(SocketAddr::from(([127, 0, 0, 1], port)), &page);
    assert!(app.is_running(), "the app stopped");

    // A store that is not a FAT image stops the app before it serves, saying what it is.
    let garbage = dir.path().join("garbage.img");
    std::fs::write(&garbage, vec![0x42u8; 8192]).unwrap();
    let out = common::fata(&[
        "run",
        "--release",
        "--target",
        "unix",
        "apps/www",
        "--kv",
        &format!("site={}", garbage.display()),
        "--",
        "--site",
        "site",
    ]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("garbage.img is not a FAT image"), "{all}");
    assert!(!all.contains("www: serving"), "{all}");
}

#[test]
fn www_on_hvt_crawls_the_same_after_a_restore() {
    if !fata_testkit::kvm() {
        return;
    }
    let Some(ns) = Netns::create("wwwsnap", 86) else {
        return;
    };
    build("apps/www", "hvt");
    let run_dir = tempfile::tempdir().unwrap();
    let snapshots = tempfile::tempdir().unwrap();
    let saved = snapshots.path().join("www");
    let ipv4 = format!("{}/24", ns.guest());
    let boot = ns.fata_with_run_dir(
        run_dir.path(),
        &[
            "run",
            "--release",
            "--target",
            "hvt",
            "apps/www",
            "--name",
            "www-s",
            "--net",
            "tap0",
            "--",
            "--ipv4",
            &ipv4,
        ],
    );
    let mut app = Running::start(boot, "www: serving");
    let addr = SocketAddr::from((ns.guest(), 80));
    let before = ns.run(|| crawl(addr));

    let out = common::fata_command(&["snapshot", "www-s", "-o", saved.to_str().unwrap(), "--stop"])
        .env("FATA_RUN_DIR", run_dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "fata snapshot: {}", text(&out.stderr));
    assert_eq!(app.wait_exit(Duration::from_secs(5)), Some(0));

    let restore = ns.fata_with_run_dir(run_dir.path(), &["restore", saved.to_str().unwrap()]);
    let mut restored = Running::background(restore);
    let after = ns.run(|| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the restored site did not answer"
            );
        }
        crawl(addr)
    });
    assert_eq!(before, after, "the restored site links the same pages");
    assert!(restored.is_running(), "the restored unikernel stopped");
}
