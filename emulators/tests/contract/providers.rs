//! The six connectors as the contract suite drives them. Each emulator is started the way
//! `api/src/emulated.rs` starts it: with the keys and secrets of the connector's settings.

use domain::Currency;

use connectors::{
    ebanx, maya, paymongo, payu, sandbox, wompi, CreateTransaction, PaymentMethodDetails,
    ProviderTransaction,
};
use emulators::EmulatorHandle;

use super::fixture::{amount_changed, listener, Env, ProviderFixture, WEBHOOK_DELAY_MS};
use crate::support::Delivery;

/// POSTs a customer action to the emulator (an approval page's button).
async fn customer_action<F: ProviderFixture>(env: &Env<F>, path: String) {
    let response = env
        .http
        .post(format!("{}{path}", env.emulator.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}: POST {path}", F::NAME);
}

pub struct Sandbox;

impl ProviderFixture for Sandbox {
    const NAME: &'static str = sandbox::NAME;
    const CURRENCY: Currency = Currency::COP;
    const BASE_URL_SETTING: &'static str = sandbox::ENV_BASE_URL;
    const KEY_SETTING: &'static str = sandbox::ENV_API_KEY;
    const WRONG_KEY: &'static str = "sk_sandbox_not_this_one_0123456789";
    // The sandbox's `/health` takes no key.
    const HEALTH_CHECKS_KEY: bool = false;
    const MANUAL_CAPTURE: bool = true;
    const REFUNDS: bool = true;
    const LOOKUP: bool = true;
    const IDEMPOTENT_CREATE: bool = true;

    async fn start_emulator(
        setting: &dyn Fn(&str) -> String,
        webhook_url: String,
    ) -> EmulatorHandle {
        use emulators::sandbox::{SandboxConfig, SandboxOptions};
        let config = SandboxConfig {
            api_key: setting(sandbox::ENV_API_KEY).into(),
            webhook_url,
            webhook_secret: setting(sandbox::ENV_WEBHOOK_SECRET).into(),
            webhook_delay_ms: WEBHOOK_DELAY_MS,
            processor: Default::default(),
        };
        let options = SandboxOptions {
            workers: 1,
            shutdown_timeout_secs: 1,
            ..SandboxOptions::default()
        };
        emulators::sandbox::start_with_options(listener(), config, options)
            .await
            .unwrap()
    }

    fn method() -> PaymentMethodDetails {
        PaymentMethodDetails::Card {
            token: emulators::sandbox::tokens::APPROVED.into(),
        }
    }

    async fn held(env: &Env<Self>, request: &CreateTransaction) -> Option<usize> {
        let listed: serde_json::Value = env
            .http
            .get(format!("{}/v1/transactions", env.emulator.base_url()))
            .query(&[("reference", request.reference.as_str())])
            .bearer_auth(env.setting(sandbox::ENV_API_KEY))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let payment = request.payment_id.to_string();
        let data = listed["data"].as_array().expect("a list of transactions");
        Some(
            data.iter()
                .filter(|tx| tx["payment_id"] == payment.as_str())
                .count(),
        )
    }

    fn forge(delivery: &Delivery) -> Delivery {
        amount_changed(delivery, "1234.00")
    }
}

pub struct Wompi;

impl ProviderFixture for Wompi {
    const NAME: &'static str = wompi::NAME;
    const CURRENCY: Currency = Currency::COP;
    const BASE_URL_SETTING: &'static str = wompi::ENV_BASE_URL;
    const KEY_SETTING: &'static str = wompi::ENV_PRIVATE_KEY;
    const WRONG_KEY: &'static str = "prv_test_not_this_one_0123456789abcdef";
    const HEALTH_CHECKS_KEY: bool = true;
    const MANUAL_CAPTURE: bool = false;
    const REFUNDS: bool = false;
    const LOOKUP: bool = true;
    const IDEMPOTENT_CREATE: bool = false;

    async fn start_emulator(
        setting: &dyn Fn(&str) -> String,
        webhook_url: String,
    ) -> EmulatorHandle {
        use emulators::wompi::{WompiSandboxConfig, WompiSandboxOptions};
        let config = WompiSandboxConfig {
            public_key: setting(wompi::ENV_PUBLIC_KEY),
            private_key: setting(wompi::ENV_PRIVATE_KEY).into(),
            events_secret: setting(wompi::ENV_EVENTS_SECRET).into(),
            integrity_secret: setting(wompi::ENV_INTEGRITY_SECRET).into(),
            webhook_url,
            webhook_delay_ms: WEBHOOK_DELAY_MS,
            deliver_webhooks: true,
        };
        let options = WompiSandboxOptions {
            workers: 1,
            shutdown_timeout_secs: 1,
            ..WompiSandboxOptions::default()
        };
        emulators::wompi::start_with_options(listener(), config, options)
            .await
            .unwrap()
    }

    /// Wompi's test Nequi number that approves.
    fn method() -> PaymentMethodDetails {
        PaymentMethodDetails::Nequi {
            phone_number: "3991111111".into(),
        }
    }

    fn forge(delivery: &Delivery) -> Delivery {
        amount_changed(delivery, "123400")
    }
}

pub struct Payu;

impl ProviderFixture for Payu {
    const NAME: &'static str = payu::NAME;
    const CURRENCY: Currency = Currency::COP;
    const BASE_URL_SETTING: &'static str = payu::ENV_BASE_URL;
    const KEY_SETTING: &'static str = payu::ENV_API_KEY;
    const WRONG_KEY: &'static str = "test_payu_api_key_0123456789zzzz";
    const HEALTH_CHECKS_KEY: bool = true;
    const MANUAL_CAPTURE: bool = true;
    const REFUNDS: bool = true;
    const LOOKUP: bool = true;
    const IDEMPOTENT_CREATE: bool = false;

    async fn start_emulator(
        setting: &dyn Fn(&str) -> String,
        webhook_url: String,
    ) -> EmulatorHandle {
        use emulators::payu::{PayuSandboxConfig, PayuSandboxOptions, SignatureAlgorithm};
        let signature_algorithm = match setting(payu::ENV_SIGNATURE_ALGORITHM).as_str() {
            "MD5" => SignatureAlgorithm::Md5,
            "HMAC_SHA256" => SignatureAlgorithm::HmacSha256,
            other => panic!("PayU signature algorithm `{other}`"),
        };
        let config = PayuSandboxConfig {
            api_key: setting(payu::ENV_API_KEY).into(),
            api_login: setting(payu::ENV_API_LOGIN),
            merchant_id: setting(payu::ENV_MERCHANT_ID),
            account_id: setting(payu::ENV_ACCOUNT_ID),
            signature_algorithm,
            signature_secret: setting(payu::ENV_SIGNATURE_SECRET).into(),
            webhook_url,
            webhook_delay_ms: WEBHOOK_DELAY_MS,
            deliver_webhooks: true,
            efecty_expiry: emulators::payu::EFECTY_EXPIRY_DEFAULT,
        };
        let options = PayuSandboxOptions {
            workers: 1,
            shutdown_timeout_secs: 1,
            ..PayuSandboxOptions::default()
        };
        emulators::payu::start_with_options(listener(), config, options)
            .await
            .unwrap()
    }

    fn method() -> PaymentMethodDetails {
        PaymentMethodDetails::Card {
            token: emulators::payu::tokens::APPROVED.into(),
        }
    }

    fn forge(delivery: &Delivery) -> Delivery {
        amount_changed(delivery, "1234.00")
    }
}

pub struct Maya;

impl ProviderFixture for Maya {
    const NAME: &'static str = maya::NAME;
    const CURRENCY: Currency = Currency::PHP;
    const BASE_URL_SETTING: &'static str = maya::ENV_BASE_URL;
    const KEY_SETTING: &'static str = maya::ENV_PUBLIC_KEY;
    const WRONG_KEY: &'static str = "pk-unknown-key-0000000000000000000000000000";
    // Maya's health check presents the secret key; checkouts the public one.
    const HEALTH_CHECKS_KEY: bool = false;
    const MANUAL_CAPTURE: bool = true;
    const REFUNDS: bool = true;
    const LOOKUP: bool = true;
    const IDEMPOTENT_CREATE: bool = false;

    async fn start_emulator(
        setting: &dyn Fn(&str) -> String,
        webhook_url: String,
    ) -> EmulatorHandle {
        use emulators::maya::{EmulatorOptions, MayaSandboxConfig};
        let config = MayaSandboxConfig {
            public_key: setting(maya::ENV_PUBLIC_KEY),
            secret_key: setting(maya::ENV_SECRET_KEY).into(),
            webhook_url,
            webhook_delay_ms: WEBHOOK_DELAY_MS,
            deliver_webhooks: true,
        };
        let options = EmulatorOptions {
            workers: 1,
            shutdown_timeout_secs: 1,
            ..EmulatorOptions::default()
        };
        emulators::maya::start_with_options(listener(), config, options)
            .await
            .unwrap()
    }

    /// The emulator posts from this machine.
    fn overrides() -> Vec<(&'static str, String)> {
        vec![(maya::ENV_WEBHOOK_SOURCES, "127.0.0.1/32,::1/128".to_owned())]
    }

    fn method() -> PaymentMethodDetails {
        PaymentMethodDetails::Maya
    }

    /// The customer completes the checkout page.
    async fn pay(env: &Env<Self>, tx: &ProviderTransaction) {
        customer_action(env, format!("/_sandbox/checkouts/{}/complete", tx.id)).await;
    }

    /// Maya does not sign its webhooks; they are authenticated by where they come from.
    fn forge(delivery: &Delivery) -> Delivery {
        Delivery {
            peer: Some("10.9.9.9".parse().unwrap()),
            ..delivery.clone()
        }
    }
}

/// GCash through PayMongo.
pub struct Gcash;

impl ProviderFixture for Gcash {
    const NAME: &'static str = paymongo::NAME;
    const CURRENCY: Currency = Currency::PHP;
    const BASE_URL_SETTING: &'static str = paymongo::ENV_BASE_URL;
    const KEY_SETTING: &'static str = paymongo::ENV_SECRET_KEY;
    const WRONG_KEY: &'static str = "sk_test_unknown000000000000000000000";
    const HEALTH_CHECKS_KEY: bool = true;
    const MANUAL_CAPTURE: bool = false;
    const REFUNDS: bool = true;
    const LOOKUP: bool = false;
    const IDEMPOTENT_CREATE: bool = true;

    async fn start_emulator(
        setting: &dyn Fn(&str) -> String,
        webhook_url: String,
    ) -> EmulatorHandle {
        use emulators::paymongo::{EmulatorOptions, PaymongoSandboxConfig};
        let public_key = Some(setting(paymongo::ENV_PUBLIC_KEY)).filter(|k| !k.is_empty());
        let config = PaymongoSandboxConfig {
            secret_key: setting(paymongo::ENV_SECRET_KEY).into(),
            public_key,
            webhook_secret: setting(paymongo::ENV_WEBHOOK_SECRET).into(),
            webhook_url,
            webhook_delay_ms: WEBHOOK_DELAY_MS,
            deliver_webhooks: true,
        };
        let options = EmulatorOptions {
            workers: 1,
            shutdown_timeout_secs: 1,
            ..EmulatorOptions::default()
        };
        emulators::paymongo::start_with_options(listener(), config, options)
            .await
            .unwrap()
    }

    fn method() -> PaymentMethodDetails {
        PaymentMethodDetails::Gcash
    }

    /// The customer authorizes the payment on GCash's page.
    async fn pay(env: &Env<Self>, tx: &ProviderTransaction) {
        customer_action(env, format!("/_sandbox/gcash/{}/authorize", tx.id)).await;
    }

    async fn held(env: &Env<Self>, request: &CreateTransaction) -> Option<usize> {
        let listed: serde_json::Value = env
            .http
            .get(format!(
                "{}/_sandbox/payment_intents",
                env.emulator.base_url()
            ))
            .query(&[("payment_id", request.payment_id.to_string())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Some(listed["data"].as_array().expect("a list of intents").len())
    }

    fn forge(delivery: &Delivery) -> Delivery {
        amount_changed(delivery, "123400")
    }
}

/// GCash through EBANX.
pub struct Ebanx;

impl ProviderFixture for Ebanx {
    const NAME: &'static str = ebanx::NAME;
    const CURRENCY: Currency = Currency::PHP;
    const BASE_URL_SETTING: &'static str = ebanx::ENV_BASE_URL;
    const KEY_SETTING: &'static str = ebanx::ENV_INTEGRATION_KEY;
    const WRONG_KEY: &'static str = "test_ik_Unknown0000000000000000";
    const HEALTH_CHECKS_KEY: bool = true;
    const MANUAL_CAPTURE: bool = false;
    const REFUNDS: bool = true;
    const LOOKUP: bool = true;
    // EBANX keeps one payment per merchant_payment_code and refuses a second.
    const IDEMPOTENT_CREATE: bool = true;
    const FORGERY_STANDS_FOR_NOTHING: bool = true;

    async fn start_emulator(
        setting: &dyn Fn(&str) -> String,
        webhook_url: String,
    ) -> EmulatorHandle {
        use emulators::ebanx::{EbanxSandboxConfig, EmulatorOptions};
        let config = EbanxSandboxConfig {
            integration_key: setting(ebanx::ENV_INTEGRATION_KEY).into(),
            webhook_url,
            webhook_delay_ms: WEBHOOK_DELAY_MS,
            deliver_webhooks: true,
        };
        let options = EmulatorOptions {
            workers: 1,
            shutdown_timeout_secs: 1,
            ..EmulatorOptions::default()
        };
        emulators::ebanx::start_with_options(listener(), config, options)
            .await
            .unwrap()
    }

    fn method() -> PaymentMethodDetails {
        PaymentMethodDetails::Gcash
    }

    /// The customer confirms the payment on the GCash page.
    async fn pay(env: &Env<Self>, tx: &ProviderTransaction) {
        customer_action(env, format!("/_sandbox/payments/{}/complete", tx.id)).await;
    }

    /// EBANX holds at most one payment per `merchant_payment_code`: asked by ours.
    async fn held(env: &Env<Self>, request: &CreateTransaction) -> Option<usize> {
        let answer: serde_json::Value = env
            .http
            .post(format!("{}/ws/query", env.emulator.base_url()))
            .json(&serde_json::json!({
                "integration_key": env.setting(ebanx::ENV_INTEGRATION_KEY),
                "merchant_payment_code": request.payment_id.to_string(),
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Some(usize::from(answer["status"] == "SUCCESS"))
    }

    /// EBANX signs nothing payledger checks; a notification names a hash: another one.
    fn forge(delivery: &Delivery) -> Delivery {
        let body = String::from_utf8_lossy(&delivery.body);
        let (head, hash) = body.rsplit_once("hash_codes=").expect("a hash in the body");
        let flipped: String = hash
            .chars()
            .map(|c| if c == 'f' { '0' } else { 'f' })
            .collect();
        Delivery {
            body: format!("{head}hash_codes={flipped}").into_bytes(),
            ..delivery.clone()
        }
    }
}
