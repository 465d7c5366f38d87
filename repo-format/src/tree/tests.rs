use super::*;

fn t(s: &str) -> GoTime {
    GoTime::parse_rfc3339(s).unwrap()
}

fn id(s: &str) -> Id {
    Id::from_hex(s).unwrap()
}

fn enc(n: &Node) -> String {
    let mut o = Vec::new();
    n.encode_into(&mut o).unwrap();
    String::from_utf8(o).unwrap()
}

fn name_json(name: &[u8]) -> String {
    let s = enc(&Node::new(name.to_vec(), NodeType::File));
    let start = "{\"name\":".len();
    let end = s.find(",\"type\"").unwrap();
    s[start..end].to_owned()
}

#[test]
fn spec_example_nodes() {
    // spec: restic-format §11.2 (real restic 0.14 output).
    let now = t("2026-11-22T18:58:51.874635235Z");
    let file = Node {
        name: b"<html>&amp".to_vec(),
        node_type: NodeType::File,
        mode: 420,
        mtime: now,
        atime: now,
        ctime: now,
        user: b"root".to_vec(),
        group: b"root".to_vec(),
        inode: 10060338,
        device_id: 65024,
        size: 1,
        links: 1,
        content: Some(vec![id(
            "a1fce4363854ff888cff4b8e7875d600c2682390412a8cf79b37d0b11148b0fa",
        )]),
        ..Node::default()
    };
    let want = r#"{"name":"\u003chtml\u003e\u0026amp","type":"file","mode":420,"mtime":"2026-11-22T18:58:51.874635235Z","atime":"2026-11-22T18:58:51.874635235Z","ctime":"2026-11-22T18:58:51.874635235Z","uid":0,"gid":0,"user":"root","group":"root","inode":10060338,"device_id":65024,"size":1,"links":1,"content":["a1fce4363854ff888cff4b8e7875d600c2682390412a8cf79b37d0b11148b0fa"]}"#;
    assert_eq!(enc(&file), want);

    let empty = Node {
        name: b"empty".to_vec(),
        size: 0,
        inode: 10060343,
        content: Some(vec![]),
        ..file.clone()
    };
    assert!(enc(&empty).ends_with(r#""inode":10060343,"device_id":65024,"links":1,"content":[]}"#));

    let dir = Node {
        name: b"sub".to_vec(),
        node_type: NodeType::Dir,
        mode: 2147484141,
        size: 0,
        links: 0,
        inode: 10059815,
        content: None,
        subtree: Some(id(
            "e3d55f0000000000000000000000000000000000000000000000000000000000",
        )),
        ..file.clone()
    };
    assert!(enc(&dir).ends_with(r#""inode":10059815,"device_id":65024,"content":null,"subtree":"e3d55f0000000000000000000000000000000000000000000000000000000000"}"#));

    let link = Node {
        name: b"goodlink".to_vec(),
        node_type: NodeType::Symlink,
        mode: 134218239,
        size: 0,
        linktarget: b"normal<target>".to_vec(),
        content: None,
        ..file.clone()
    };
    assert!(enc(&link)
        .ends_with(r#""links":1,"linktarget":"normal\u003ctarget\u003e","content":null}"#));

    let tree = Tree {
        nodes: vec![dir, file, empty, link],
    };
    assert!(tree.encode().is_err(), "unsorted");
    let mut sorted = tree.clone();
    sorted.sort();
    let bytes = sorted.encode().unwrap();
    assert!(bytes.starts_with(b"{\"nodes\":[{\"name\":\"\\u003chtml"));
    assert!(bytes.ends_with(b"}]}\n"));
    assert_eq!(Tree::decode(&bytes).unwrap(), sorted);
}

#[test]
fn empty_tree_and_duplicates() {
    assert_eq!(Tree::new().encode().unwrap(), b"{\"nodes\":[]}\n");
    let n = Node::new(b"a".to_vec(), NodeType::File);
    let dup = Tree {
        nodes: vec![n.clone(), n],
    };
    assert!(matches!(
        dup.encode(),
        Err(TreeError::NotSorted { index: 1, .. })
    ));
    let zero = Tree {
        nodes: vec![Node::new(b"x".to_vec(), NodeType::Fifo)],
    };
    assert_eq!(
        zero.encode().unwrap(),
        br#"{"nodes":[{"name":"x","type":"fifo","mtime":"0001-01-01T00:00:00Z","atime":"0001-01-01T00:00:00Z","ctime":"0001-01-01T00:00:00Z","uid":0,"gid":0,"content":null}]}
"#
    );
}

#[test]
fn name_table() {
    // spec: restic-format §11.3 table.
    let cases: &[(&[u8], &str)] = &[
        (b"a\"b", r#""a\\\"b""#),
        (b"back\\slash", r#""back\\\\slash""#),
        (b"nl\nname", r#""nl\\nname""#),
        (b"ctl\x01\tname", r#""ctl\\x01\\tname""#),
        (b"bad\xff\xfeutf8", r#""bad\\xff\\xfeutf8""#),
        (b"del\x7f", r#""del\\x7f""#),
        ("nbsp\u{a0}".as_bytes(), r#""nbsp\\u00a0""#),
        ("bom\u{feff}".as_bytes(), r#""bom\\ufeff""#),
        ("\u{e0001}".as_bytes(), r#""\\U000e0001""#),
        (b"<html>&amp", r#""\u003chtml\u003e\u0026amp""#),
        ("ünïcödé ☃".as_bytes(), "\"ünïcödé ☃\""),
        ("emoji😀".as_bytes(), "\"emoji😀\""),
        ("sep\u{2028}".as_bytes(), r#""sep\\u2028""#),
    ];
    for (name, want) in cases {
        assert_eq!(&name_json(name), want, "name {name:?}");
        let n = Node::new(name.to_vec(), NodeType::File);
        let tree = Tree { nodes: vec![n] };
        let back = Tree::decode(&tree.encode().unwrap()).unwrap();
        assert_eq!(back.nodes[0].name, *name);
    }
}

#[test]
fn linktarget_raw() {
    // spec: restic-format §11.6 (node_test.go).
    let n = Node {
        linktarget: vec![0, 1, 2, 0xfa, 0xfb, 0xfc],
        ..Node::new(b"l".to_vec(), NodeType::Symlink)
    };
    let s = enc(&n);
    assert!(
        s.contains(
            r#""linktarget":"\u0000\u0001\u0002\ufffd\ufffd\ufffd","linktarget_raw":"AAEC+vv8""#
        ),
        "{s}"
    );
    let back = Tree::decode(
        Tree {
            nodes: vec![n.clone()],
        }
        .encode()
        .unwrap()
        .as_slice(),
    )
    .unwrap();
    assert_eq!(back.nodes[0], n);
    // Old lossy form decodes to the replacement characters.
    let old = br#"{"nodes":[{"name":"l","type":"symlink","linktarget":"a\ufffd","content":null}]}"#;
    assert_eq!(
        Tree::decode(old).unwrap().nodes[0].linktarget,
        "a\u{fffd}".as_bytes()
    );
}

#[test]
fn all_fields_round_trip() {
    let mut ga = BTreeMap::new();
    ga.insert(
        "windows.file_attributes".to_owned(),
        br#"{ "a" : "<b>" }"#.to_vec(),
    );
    ga.insert("windows.creation_time".to_owned(), b"\"x\"".to_vec());
    let n = Node {
        name: b"dev\xff".to_vec(),
        node_type: NodeType::CharDev,
        mode: MODE_DEVICE | MODE_CHAR_DEVICE | 0o600,
        mtime: t("2024-03-05T07:08:09.5+01:00"),
        atime: t("2024-03-05T07:08:09.000000001-05:30"),
        ctime: t("0012-01-02T03:04:05Z"),
        uid: 1000,
        gid: 100,
        user: b"\xffuser".to_vec(),
        group: b"grp".to_vec(),
        inode: u64::MAX,
        device_id: 1,
        size: 2,
        links: 3,
        linktarget: vec![],
        extended_attributes: vec![
            ExtendedAttribute {
                name: b"user.a".to_vec(),
                value: Some(b"v".to_vec()),
            },
            ExtendedAttribute {
                name: b"user.nil".to_vec(),
                value: None,
            },
            ExtendedAttribute {
                name: b"user.empty".to_vec(),
                value: Some(vec![]),
            },
        ],
        generic_attributes: ga,
        device: 0x0105,
        content: None,
        subtree: None,
        error: "oops & <x>".to_owned(),
    };
    let s = enc(&n);
    let want = r#"{"name":"dev\\xff","type":"chardev","mode":69206400,"mtime":"2024-03-05T07:08:09.5+01:00","atime":"2024-03-05T07:08:09.000000001-05:30","ctime":"0012-01-02T03:04:05Z","uid":1000,"gid":100,"user":"\ufffduser","group":"grp","inode":18446744073709551615,"device_id":1,"size":2,"links":3,"extended_attributes":[{"name":"user.a","value":"dg=="},{"name":"user.nil","value":null},{"name":"user.empty","value":""}],"generic_attributes":{"windows.creation_time":"x","windows.file_attributes":{"a":"\u003cb\u003e"}},"device":261,"content":null,"error":"oops \u0026 \u003cx\u003e"}"#;
    assert_eq!(s, want);
    let back = Tree::decode(format!("{{\"nodes\":[{s}]}}").as_bytes()).unwrap();
    // user was lossy (invalid UTF-8), generic attributes come back compacted.
    assert_eq!(back.nodes[0].user, "\u{fffd}user".as_bytes());
    // A valid U+FFFD is emitted raw, so lossy fields do not re-encode
    // identically (the reason restic copies old trees verbatim, spec §11.6).
    let again = enc(&back.nodes[0]);
    assert_eq!(again, want.replace("\\ufffduser", "\u{fffd}user"));
}

#[test]
fn decoding_is_lenient_and_safe() {
    let t = Tree::decode(
        br#"{"x":1,"nodes":[{"name":"a","type":"weird","unknown":[1,2],"content":[]}],"y":null}"#,
    )
    .unwrap();
    assert_eq!(t.nodes[0].node_type, NodeType::Invalid);
    assert_eq!(t.nodes[0].content, Some(vec![]));
    assert!(Tree::decode(br#"{"nodes":null}"#).unwrap().nodes.is_empty());
    assert!(Tree::decode(br#"{}"#).unwrap().nodes.is_empty());
    assert!(matches!(
        Tree::decode(br#"{"nodes":[{"name":"a\"b"}]}"#),
        Err(TreeError::InvalidName(_))
    ));
    assert!(Tree::decode(br#"{"nodes":[{"name":"a","content":["00"]}]}"#).is_err());
    assert!(Tree::decode(br#"{"nodes":[{"name":"a","linktarget_raw":"!!"}]}"#).is_err());
    assert!(Tree::decode(b"").is_err());
    assert!(Tree::decode(b"{\"nodes\":[").is_err());
    let out_of_range = Node {
        mtime: GoTime::new(300_000_000_000, 0, 0),
        ..Node::new(b"f".to_vec(), NodeType::File)
    };
    let tree = Tree {
        nodes: vec![out_of_range.clone()],
    };
    assert!(matches!(tree.encode(), Err(TreeError::Time { .. })));
    let fixed = Node {
        mtime: out_of_range.mtime.clamp_year(),
        ..out_of_range
    };
    assert!(Tree { nodes: vec![fixed] }.encode().is_ok());
}

#[test]
fn find_by_name() {
    let mut t = Tree::new();
    for n in [&b"b"[..], b"a", b"c\xff"] {
        t.nodes.push(Node::new(n.to_vec(), NodeType::File));
    }
    t.sort();
    assert_eq!(t.find(b"c\xff").unwrap().name, b"c\xff");
    assert!(t.find(b"z").is_none());
}
