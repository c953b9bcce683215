//! Tokens from an auth service beside API keys: RS256 and ES256 tokens signed here with the
//! tests' own keys (tests/fixtures/jwt) and RustCrypto signers, the issuer's JWKS served over
//! HTTP by the test; `iss`, `aud`, `exp`, `nbf` and the algorithm checked; a key the issuer
//! starts publishing is fetched when a token names it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpResponse, HttpServer};
use api::config::ServeRole;
use api::jwt::JwtSettings;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use e2e::{payment_body, spawn_app_configured, TestApp};
use p256::ecdsa::signature::Signer as _;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::SignatureEncoding;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

const ISSUER: &str = "https://auth.test.example";
const AUDIENCE: &str = "payledger";

enum Signer {
    Rs256(
        &'static str,
        Box<rsa::pkcs1v15::SigningKey<rsa::sha2::Sha256>>,
        Value,
    ),
    Es256(&'static str, p256::ecdsa::SigningKey, Value),
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn rs256(kid: &'static str, file: &str) -> Signer {
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&fixture(file)).expect("rsa key");
    let public = key.to_public_key();
    let jwk = json!({
        "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
        "n": B64.encode(public.n().to_bytes_be()), "e": B64.encode(public.e().to_bytes_be()),
    });
    Signer::Rs256(kid, Box::new(rsa::pkcs1v15::SigningKey::new(key)), jwk)
}

fn es256(kid: &'static str) -> Signer {
    let secret = p256::SecretKey::from_pkcs8_pem(&fixture("es256.pem")).expect("ec key");
    let point = secret.public_key().to_encoded_point(false);
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
        "x": B64.encode(point.x().expect("x")), "y": B64.encode(point.y().expect("y")),
    });
    Signer::Es256(kid, p256::ecdsa::SigningKey::from(secret), jwk)
}

impl Signer {
    fn jwk(&self) -> &Value {
        match self {
            Signer::Rs256(_, _, jwk) | Signer::Es256(_, _, jwk) => jwk,
        }
    }

    /// A compact JWS of `claims` with this key (or `header` overrides for hostile tokens).
    fn token_with(&self, header: Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = match self {
            Signer::Rs256(_, key, _) => key.sign(input.as_bytes()).to_vec(),
            Signer::Es256(_, key, _) => {
                let signature: p256::ecdsa::Signature = key.sign(input.as_bytes());
                signature.to_bytes().to_vec()
            }
        };
        format!("{input}.{}", B64.encode(signature))
    }

    fn token(&self, claims: &Value) -> String {
        let (alg, kid) = match self {
            Signer::Rs256(kid, _, _) => ("RS256", kid),
            Signer::Es256(kid, _, _) => ("ES256", kid),
        };
        self.token_with(json!({"alg": alg, "typ": "JWT", "kid": kid}), claims)
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(role: &str, merchant: Option<&str>) -> Value {
    let mut claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-17",
        "iat": now(), "exp": now() + 300, "payledger_role": role,
    });
    if let Some(merchant) = merchant {
        claims["payledger_merchant"] = json!(merchant);
    }
    claims
}

/// The issuer's JWKS, served over HTTP; what it publishes can change; fetches are counted.
struct Issuer {
    url: String,
    published: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

async fn issuer(keys: &[&Signer]) -> Issuer {
    let published = Arc::new(Mutex::new(json!({
        "keys": keys.iter().map(|k| k.jwk().clone()).collect::<Vec<_>>()
    })));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (serving, counting) = (published.clone(), fetches.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = HttpServer::new(move || {
        let (serving, counting) = (serving.clone(), counting.clone());
        App::new().route(
            "/.well-known/jwks.json",
            web::get().to(move || {
                let body = serving.lock().expect("jwks").clone();
                counting.fetch_add(1, Ordering::SeqCst);
                async move { HttpResponse::Ok().json(body) }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    Issuer {
        url: format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
        published,
        fetches,
    }
}

async fn app_trusting(issuer: &Issuer) -> TestApp {
    let jwks_url = issuer.url.clone();
    spawn_app_configured(ServeRole::All, move |s| {
        s.jwt = Some(JwtSettings {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks_url,
            leeway_s: 60,
            role_claim: "payledger_role".into(),
            merchant_claim: "payledger_merchant".into(),
        });
    })
    .await
}

async fn status(app: &TestApp, token: &str) -> (u16, Value) {
    let response = app.get("/v1/payments?limit=1", token).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn tokens_from_the_issuer_are_accepted_beside_api_keys() {
    let (rsa_key, ec_key) = (rs256("rsa-1", "rs256-a.pem"), es256("ec-1"));
    let issuer = issuer(&[&rsa_key, &ec_key]).await;
    let app = app_trusting(&issuer).await;

    let checkout = rsa_key.token(&claims("checkout", Some(e2e::MERCHANT)));
    let created = app
        .post(
            "/v1/payments",
            &checkout,
            Some("jwt-1"),
            &payment_body("9.00", "USD", "jwt-1", "tok_sandbox_approved", "automatic"),
        )
        .await;
    assert_eq!(created.status(), 201, "a checkout token creates a payment");
    // The same merchant's API key sees it: the token's merchant claim was used.
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_status(&id, "APPROVED").await;
    let other = rsa_key.token(&claims("checkout", Some("merchant-elsewhere")));
    let response = app.get(&format!("/v1/payments/{id}"), &other).await;
    assert_eq!(
        response.status(),
        404,
        "another merchant's token does not see it"
    );

    let admin = ec_key.token(&claims("admin", None));
    assert_eq!(status(&app, &admin).await.0, 200, "ES256");
    assert_eq!(
        status(&app, &app.checkout_key).await.0,
        200,
        "API keys still work"
    );
    assert_eq!(
        issuer.fetches.load(Ordering::SeqCst),
        1,
        "the JWKS is cached"
    );
}

#[tokio::test]
async fn tokens_that_are_expired_early_misaddressed_or_forged_are_refused() {
    let (rsa_key, ec_key) = (rs256("rsa-1", "rs256-a.pem"), es256("ec-1"));
    let issuer = issuer(&[&rsa_key, &ec_key]).await;
    let app = app_trusting(&issuer).await;
    let admin = || claims("admin", None);
    let with = |field: &str, value: Value| {
        let mut claims = admin();
        claims[field] = value;
        claims
    };

    // Within the 60 s leeway, and past it.
    assert_eq!(
        status(&app, &rsa_key.token(&with("exp", json!(now() - 30))))
            .await
            .0,
        200
    );
    let cases = [
        (
            "expired",
            rsa_key.token(&with("exp", json!(now() - 120))),
            "expired",
        ),
        (
            "not yet",
            rsa_key.token(&with("nbf", json!(now() + 120))),
            "not valid yet",
        ),
        (
            "audience",
            rsa_key.token(&with("aud", json!("someone-else"))),
            "audience",
        ),
        (
            "issuer",
            rsa_key.token(&with("iss", json!("https://evil.example"))),
            "issuer",
        ),
        (
            "no role",
            rsa_key.token(&with("payledger_role", json!("root"))),
            "role",
        ),
        (
            "checkout without merchant",
            rsa_key.token(&claims("checkout", None)),
            "merchant",
        ),
        (
            "no exp",
            {
                let mut c = admin();
                c.as_object_mut().unwrap().remove("exp");
                rsa_key.token(&c)
            },
            "claim",
        ),
        // Signed by a key the issuer does not publish under that key id.
        (
            "wrong key",
            {
                let stranger = rs256("rsa-1", "rs256-b.pem");
                stranger.token(&admin())
            },
            "signature",
        ),
        // The classic confusion: HS256 "signed" with the public key, and `none`.
        (
            "hs256",
            {
                let header = json!({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"});
                rsa_key.token_with(header, &admin())
            },
            "RS256 and ES256",
        ),
        (
            "none",
            {
                let header = B64.encode(json!({"alg": "none", "kid": "rsa-1"}).to_string());
                format!("{header}.{}.", B64.encode(admin().to_string()))
            },
            "",
        ),
        // An ES256 token naming the RSA key.
        (
            "algorithm for another key",
            { ec_key.token_with(json!({"alg": "ES256", "kid": "rsa-1"}), &admin()) },
            "algorithm",
        ),
    ];
    for (case, token, detail) in cases {
        let (code, body) = status(&app, &token).await;
        assert_eq!(code, 401, "{case}: {body}");
        assert!(
            body["detail"].as_str().unwrap_or_default().contains(detail),
            "{case}: {body}"
        );
        assert!(
            !body.to_string().contains(&token),
            "{case}: the token is echoed"
        );
    }
    // A tampered payload keeps the original signature: refused.
    let token = rsa_key.token(&admin());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = B64.encode(
        claims("admin", None)
            .to_string()
            .replace("user-17", "user-18"),
    );
    assert_eq!(status(&app, &parts.join(".")).await.0, 401, "tampered");
}

#[tokio::test]
async fn a_key_the_issuer_starts_publishing_is_fetched_when_a_token_names_it() {
    let first = rs256("rsa-1", "rs256-a.pem");
    let issuer = issuer(&[&first]).await;
    let app = app_trusting(&issuer).await;
    assert_eq!(
        status(&app, &first.token(&claims("admin", None))).await.0,
        200
    );
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1);

    // The issuer rotates: a new key id, published beside the old one.
    let second = rs256("rsa-2", "rs256-b.pem");
    *issuer.published.lock().unwrap() = json!({"keys": [first.jwk(), second.jwk()]});
    assert_eq!(
        status(&app, &second.token(&claims("admin", None))).await.0,
        200
    );
    assert_eq!(
        issuer.fetches.load(Ordering::SeqCst),
        2,
        "fetched again for the new kid"
    );

    // Unknown key ids do not turn into a fetch each.
    let stranger = rs256("rsa-9", "rs256-b.pem");
    for _ in 0..5 {
        assert_eq!(
            status(&app, &stranger.token(&claims("admin", None)))
                .await
                .0,
            401
        );
    }
    assert!(
        issuer.fetches.load(Ordering::SeqCst) <= 3,
        "refetches are bounded"
    );
}
