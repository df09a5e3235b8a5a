//! The kit's own tests: each peer really starts, answers on loopback and is stopped.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use trailgate_testkit::pg::{self, Postgres};
use trailgate_testkit::s3::S3Server;

/// Opens a session on database `db` with the PostgreSQL wire protocol (3.0) as `postgres` and
/// tells whether the server got it ready (`ReadyForQuery`) rather than refusing it (`Error`).
fn pg_session_ready(port: u16, db: &str) -> bool {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to PostgreSQL");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let params = format!("user\0postgres\0database\0{db}\0\0");
    let mut startup = ((8 + params.len()) as u32).to_be_bytes().to_vec();
    startup.extend_from_slice(&196_608u32.to_be_bytes());
    startup.extend_from_slice(params.as_bytes());
    stream.write_all(&startup).unwrap();
    loop {
        let mut head = [0u8; 5];
        stream
            .read_exact(&mut head)
            .expect("a message from PostgreSQL");
        let len = u32::from_be_bytes(head[1..].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len - 4];
        stream.read_exact(&mut body).unwrap();
        match head[0] {
            b'Z' => {
                stream.write_all(b"X\0\0\0\x04").unwrap();
                return true;
            }
            b'E' => return false,
            _ => {}
        }
    }
}

#[test]
fn shared_postgres_gives_each_test_a_database() {
    let pg = pg::shared().expect("shared cluster");
    assert!(
        std::ptr::eq(pg, pg::shared().unwrap()),
        "one cluster per process"
    );
    let a = pg.create_unique_database("Kit-Test").unwrap();
    let b = pg.create_unique_database("Kit-Test").unwrap();
    assert_ne!(a, b);
    let prefix = format!("postgres://postgres@127.0.0.1:{}/kit_test_", pg.port());
    assert!(a.starts_with(&prefix) && b.starts_with(&prefix), "{a} {b}");
    let named = pg.create_database("kit_named").unwrap();
    assert_eq!(named, pg.url("kit_named"));
    assert!(
        pg.create_database("kit_named").is_err(),
        "it exists already"
    );
    for url in [&a, &b, &named] {
        let db = url.rsplit('/').next().unwrap();
        assert!(
            pg_session_ready(pg.port(), db),
            "session on {db}; log:\n{}",
            pg.log()
        );
    }
    assert!(!pg_session_ready(pg.port(), "no_such_db"));
}

#[test]
fn postgres_stops_and_cleans_up() {
    let mut pg = Postgres::start().expect("cluster");
    let port = pg.port();
    TcpStream::connect(("127.0.0.1", port)).expect("port accepts TCP");
    assert!(pg_session_ready(port, "postgres"));
    assert!(
        pg.log().contains("ready to accept connections"),
        "{}",
        pg.log()
    );
    pg.stop();
    pg.stop(); // idempotent
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "stopped");
    assert!(pg.log().contains("shut down"), "{}", pg.log());
    drop(pg);
}

/// Sends a raw, unsigned HTTP/1.1 request and returns the whole response (read to the end).
fn raw_http(port: u16, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    response
}

#[test]
fn s3_server_stores_lists_pauses_and_resumes() {
    let mut s3 = S3Server::start().expect("moto_server");
    let port = s3.port();
    assert_eq!(s3.endpoint(), format!("http://127.0.0.1:{port}"));
    s3.create_bucket("kit-bucket").unwrap();

    // Bytes that are not text, stored with a plain request of our own.
    let object: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let mut put = format!(
        "PUT /kit-bucket/rec/one.bin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        object.len()
    )
    .into_bytes();
    put.extend_from_slice(&object);
    let response = raw_http(port, &put);
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_eq!(
        s3.object_bytes("kit-bucket", "rec/one.bin").unwrap(),
        object
    );

    s3.put_object("kit-bucket", "rec/two words & more.txt", b"two")
        .unwrap();
    s3.put_object("kit-bucket", "other/three", b"").unwrap();
    assert_eq!(
        s3.object_bytes("kit-bucket", "rec/two words & more.txt")
            .unwrap(),
        b"two"
    );
    assert_eq!(s3.object_bytes("kit-bucket", "other/three").unwrap(), b"");
    assert_eq!(
        s3.list_keys("kit-bucket", "rec/").unwrap(),
        ["rec/one.bin", "rec/two words & more.txt"]
    );
    assert_eq!(s3.list_keys("kit-bucket", "").unwrap().len(), 3);
    assert!(s3.object_bytes("kit-bucket", "missing").is_err());
    assert!(s3.list_keys("no-such-bucket", "").is_err());

    // Paused: the kernel still accepts the connection, but no answer comes.
    s3.pause();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect while paused");
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let get = format!("GET /kit-bucket/rec/one.bin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(get.as_bytes()).unwrap();
    let started = Instant::now();
    let err = stream
        .read(&mut [0u8; 64])
        .expect_err("no answer while paused");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));

    s3.resume();
    assert_eq!(
        s3.object_bytes("kit-bucket", "rec/one.bin").unwrap(),
        object
    );

    s3.stop();
    s3.stop(); // idempotent
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "stopped");
}
