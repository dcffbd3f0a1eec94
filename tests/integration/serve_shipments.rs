//! Shipments in `serve` (issue 15), over HTTP as vendors and others call it: who may post, a
//! token that does not verify is refused and never stored, and each GPU's site history is
//! recorded from accepted attestations and shown only to those who may see it. (A shipment
//! that verifies, end to end with a diversion, is the end-to-end acceptance test's.)

use serde_json::Value;

use crate::support::{VerifierSetup, agent_push, bearer, http, ok, path_segment, resigned, s};

const LICENCE: &str = "EXAMPLE-DE-2026-0142";

/// `token issue --role vendor --licence LICENCE`.
fn vendor_token(setup: &VerifierSetup, name: &str, licence: &str) -> String {
    let out = ok(
        "tppguard-verifier",
        &[
            "token",
            "issue",
            "--config",
            s(&setup.config),
            "--role",
            "vendor",
            "--name",
            name,
            "--licence",
            licence,
        ],
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

fn post_shipment(base: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = http()
        .post(format!("{base}/v1/shipments"))
        .header("Content-Type", "application/jose");
    if let Some(token) = token {
        request = request.header("Authorization", bearer(token));
    }
    let mut resp = request.send(body).expect("POST shipment");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().expect("body");
    (status, serde_json::from_str(&text).unwrap_or_default())
}

fn get_as(base: &str, token: &str, path: &str) -> (u16, Value) {
    let mut resp = http()
        .get(format!("{base}{path}"))
        .header("Authorization", bearer(token))
        .call()
        .expect("GET");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().expect("body");
    (status, serde_json::from_str(&text).unwrap_or_default())
}

#[test]
fn serve_shipments_refuses_what_does_not_verify_and_keeps_each_vendor_to_its_own() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let vendor = vendor_token(&setup, "vendor-a", LICENCE);
    let other = vendor_token(&setup, "vendor-b", "OTHER-LICENCE");
    let verifier = setup.start();
    let base = verifier.base.clone();
    let creds = verifier.credentials.clone();

    // Only a vendor or an admin may post; a stranger is not even asked what it sends.
    assert_eq!(post_shipment(&base, None, "a.b.c").0, 401);
    for token in [&creds.node, &creds.operator] {
        let (status, answer) = post_shipment(&base, Some(token), "a.b.c");
        assert_eq!((status, answer["code"].as_str()), (403, Some("forbidden")));
    }
    // What does not verify is refused with its code: garbage, and a "shipment" signed with a
    // node's key (root on a node cannot vouch for a delivery).
    let push = agent_push(&base, &creds.node_file, &setup.node);
    assert!(matches!(push.status.code(), Some(0 | 1)));
    let attestation = std::fs::read_to_string(setup.node.join("attestation.jws"))
        .unwrap_or_else(|_| "x.y.z".to_owned());
    let forged = if attestation.split('.').count() == 3 && attestation.len() > 10 {
        resigned(&setup.node, attestation.trim(), |claims| {
            claims["tppguard.shipment"] = serde_json::json!({"id": "SHP-1", "licence": LICENCE});
        })
    } else {
        "eyJhbGciOiJFZERTQSJ9.e30.c2ln".to_owned()
    };
    for body in ["not a token", "a.b.c", forged.as_str()] {
        let (status, answer) = post_shipment(&base, Some(&vendor), body);
        assert_eq!(status, 422, "{answer}");
        assert!(
            answer["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{answer}"
        );
    }
    let (status, answer) = get_as(&base, &vendor, "/v1/shipments");
    assert_eq!(
        (status, answer["total"].as_u64()),
        (200, Some(0)),
        "nothing stored"
    );

    // The accepted attestation's GPUs are in the site history, at the node's site.
    let (status, fleet) = get_as(&base, &creds.operator, "/v1/fleet?view=full");
    assert_eq!(status, 200);
    let node = &fleet["nodes"][0];
    let uuid = node["gpus"][0]["uuid"].as_str().expect("uuid").to_owned();
    let path = format!(
        "/v1/devices/{}/sites",
        path_segment(&format!("uuid:{uuid}"))
    );
    let (status, answer) = get_as(&base, &creds.operator, &path);
    assert_eq!(status, 200, "{answer}");
    let sites = answer["sites"].as_array().expect("sites");
    assert_eq!(sites.len(), 1, "{answer}");
    assert_eq!(sites[0]["node"], node["node"]);
    assert_eq!(sites[0]["site"], "fra-1");
    // A vendor sees no device that is on none of its shipments; a node credential nothing.
    for token in [&vendor, &other] {
        let (status, answer) = get_as(&base, token, &path);
        assert_eq!(
            (status, answer["code"].as_str()),
            (404, Some("device_unknown"))
        );
    }
    assert_eq!(get_as(&base, &creds.node, &path).0, 403);
    assert_eq!(get_as(&base, &creds.node, "/v1/shipments").0, 403);
    // The outbox is an admin's alone.
    assert_eq!(get_as(&base, &vendor, "/v1/webhooks/outbox").0, 403);
}

/// `shipment sign --dir PKI/vendor --out OUT TOML`: the token.
fn sign_shipment(setup: &VerifierSetup, toml: &std::path::Path, out: &std::path::Path) -> String {
    let vendor = setup.tmp.path().join("pki").join("vendor");
    ok(
        "tppguard-verifier",
        &[
            "shipment",
            "sign",
            "--dir",
            s(&vendor),
            "--out",
            s(out),
            s(toml),
        ],
    );
    std::fs::read_to_string(out)
        .expect("signed shipment")
        .trim()
        .to_owned()
}

#[test]
fn serve_shipments_takes_a_vendors_signed_shipment_once_and_shows_it_to_that_vendor_only() {
    let setup = VerifierSetup::new("127.0.0.1:0");
    let vendor = vendor_token(&setup, "vendor-a", LICENCE);
    let other = vendor_token(&setup, "vendor-b", "OTHER-LICENCE");
    let example = crate::support::workspace_root().join("examples/shipment.toml");
    let token = sign_shipment(&setup, &example, &setup.tmp.path().join("shipment.jws"));
    // The same shipment id with other contents: another token.
    let text = std::fs::read_to_string(&example).expect("example");
    let changed = setup.tmp.path().join("changed.toml");
    std::fs::write(
        &changed,
        text.replacen(
            "delivered_at = 2026-03-02T09:00:00Z",
            "delivered_at = 2026-03-03T09:00:00Z",
            1,
        ),
    )
    .expect("write");
    let second = sign_shipment(&setup, &changed, &setup.tmp.path().join("changed.jws"));
    assert_ne!(token, second);
    let verifier = setup.start();
    let base = verifier.base.clone();
    let creds = verifier.credentials.clone();

    // Another vendor may not post under a licence its credential does not name.
    let (status, answer) = post_shipment(&base, Some(&other), &token);
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("shipment_licence_forbidden")),
        "{answer}"
    );
    let (status, answer) = post_shipment(&base, Some(&vendor), &token);
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["added"], true);
    let id = answer["shipment"].as_str().expect("id").to_owned();
    // The same token again changes nothing; another token under the id is refused.
    let (status, answer) = post_shipment(&base, Some(&vendor), &token);
    assert_eq!(
        (status, answer["added"].as_bool()),
        (200, Some(false)),
        "{answer}"
    );
    let (status, answer) = post_shipment(&base, Some(&vendor), &second);
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("shipment_id_taken")),
        "{answer}"
    );

    // The vendor sees it, the other vendor does not.
    let (_, list) = get_as(&base, &vendor, "/v1/shipments");
    assert_eq!(list["total"], 1, "{list}");
    let (_, list) = get_as(&base, &other, "/v1/shipments");
    assert_eq!(list["total"], 0, "{list}");
    let one = format!("/v1/shipments/{}", path_segment(&id));
    assert_eq!(get_as(&base, &other, &one).0, 404);

    // The node reports the shipped GPUs: the vendor sees where they are and their history.
    let push = agent_push(&base, &creds.node_file, &setup.node);
    assert!(matches!(push.status.code(), Some(0 | 1)));
    let (status, detail) = get_as(&base, &vendor, &one);
    assert_eq!(status, 200, "{detail}");
    let devices = detail["devices"].as_array().expect("devices");
    assert!(!devices.is_empty());
    let held: Vec<&Value> = devices
        .iter()
        .filter(|d| !d["held_at"].as_array().unwrap().is_empty())
        .collect();
    let d = held
        .first()
        .expect("the simulated node holds the example's GPUs");
    assert_eq!(d["held_at"][0]["site"], "fra-1", "{d}");
    let identity = d["identities"][0].as_str().expect("identity");
    let path = format!("/v1/devices/{}/sites", path_segment(identity));
    let (status, answer) = get_as(&base, &vendor, &path);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["sites"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    assert_eq!(get_as(&base, &other, &path).0, 404);
}
