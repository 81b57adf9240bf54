//! SoftHSM2 tokens for the PKCS#11 signer's tests: a token directory of its own, tokens
//! initialised in it, and key pairs generated inside the token (the private key never exists
//! outside it, as with a real HSM).
//!
//! SoftHSM reads its configuration (`SOFTHSM2_CONF`, which names the token directory) once, when
//! a process initialises the module, so a process sees one token directory: [`SoftHsm::shared`]
//! makes it once per process and sets `SOFTHSM2_CONF` in this process's environment before the
//! module is loaded here. Node processes get the same variable through [`SoftHsm::env`]; each
//! opens its own session. Tests make a token each, with distinct labels, in that directory.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use anyhow::{bail, Context, Result};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

/// Where distributions install the SoftHSM2 module; `$SOFTHSM2_MODULE` comes first.
const MODULE_LOCATIONS: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/pkcs11/libsofthsm2.so",
];

/// The SO PIN of every test token.
pub const SO_PIN: &str = "5432109876";

/// The key types a log can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    Ed25519,
}

/// A SoftHSM2 token directory and the module that serves it.
pub struct SoftHsm {
    dir: tempfile::TempDir,
    conf: PathBuf,
    module: PathBuf,
    context: Pkcs11,
}

/// A token in a [`SoftHsm`] directory.
pub struct TestToken {
    hsm: &'static SoftHsm,
    pub label: String,
    pub pin: String,
}

/// The SoftHSM2 module, if installed.
pub fn module_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SOFTHSM2_MODULE") {
        return Some(PathBuf::from(path));
    }
    MODULE_LOCATIONS
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

impl SoftHsm {
    /// This process's token directory, or `None` (with a notice) when SoftHSM2 is not
    /// installed. When `CI` is set its absence is a failure: `scripts/test.sh` installs it.
    pub fn require() -> Option<&'static SoftHsm> {
        let installed = module_path().is_some();
        if !installed {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "SoftHSM2 is not installed (no libsofthsm2.so; set SOFTHSM2_MODULE if it is \
                     elsewhere): scripts/test.sh installs the softhsm2 package"
                );
            }
            eprintln!("SKIPPED: SoftHSM2 is not installed (apt-get install softhsm2)");
            return None;
        }
        Some(Self::shared().unwrap_or_else(|error| panic!("setting up SoftHSM2: {error:#}")))
    }

    /// This process's token directory, made on first use.
    pub fn shared() -> Result<&'static SoftHsm> {
        static SHARED: OnceLock<std::result::Result<SoftHsm, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::create().map_err(|error| format!("{error:#}")))
            .as_ref()
            .map_err(|error| anyhow::anyhow!("{error}"))
    }

    fn create() -> Result<Self> {
        let module = module_path().context("no SoftHSM2 module (set SOFTHSM2_MODULE)")?;
        let dir = tempfile::Builder::new().prefix("softhsm-").tempdir()?;
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens)?;
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n\
                 slots.removable = false\n",
                tokens.display()
            ),
        )?;
        // Before the module is loaded in this process: it reads the variable when initialised.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        let context =
            Pkcs11::new(&module).with_context(|| format!("loading {}", module.display()))?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(error) => bail!("initialising SoftHSM2: {error}"),
        }
        Ok(Self {
            dir,
            conf,
            module,
            context,
        })
    }

    /// The module's path, for `module-path=`.
    pub fn module(&self) -> &Path {
        &self.module
    }

    /// The token directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The environment a process needs to see these tokens.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("SOFTHSM2_CONF".into(), self.conf.display().to_string())]
    }

    /// A new token labelled `label` with user PIN `pin`, initialised in SoftHSM's free slot.
    ///
    /// This goes through the module loaded in this process rather than `softhsm2-util`: SoftHSM
    /// reads the token directory when the module is initialised, so a token another process
    /// adds later stays invisible here, while one made here is seen at once (and by every
    /// process that loads the module afterwards).
    pub fn create_token(&'static self, label: &str, pin: &str) -> Result<TestToken> {
        // One at a time: each takes the one free slot.
        static CREATING: Mutex<()> = Mutex::new(());
        let _creating = CREATING.lock().unwrap_or_else(PoisonError::into_inner);
        let context = &self.context;
        let free = context
            .get_slots_with_token()?
            .into_iter()
            .find(|slot| {
                context
                    .get_token_info(*slot)
                    .is_ok_and(|info| !info.token_initialized())
            })
            .context("SoftHSM offers no free slot")?;
        let so_pin = AuthPin::from(SO_PIN.to_owned());
        context
            .init_token(free, &so_pin, label)
            .with_context(|| format!("initialising token {label:?}"))?;
        let session = context.open_rw_session(free)?;
        session.login(UserType::So, Some(&so_pin))?;
        session.init_pin(&AuthPin::from(pin.to_owned()))?;
        session.logout()?;
        Ok(TestToken {
            hsm: self,
            label: label.to_owned(),
            pin: pin.to_owned(),
        })
    }
}

impl TestToken {
    /// A read-write session of this process, logged in as the user.
    fn session(&self) -> Result<Session> {
        let context = &self.hsm.context;
        let slot = context
            .get_slots_with_token()?
            .into_iter()
            .find(|slot| {
                context
                    .get_token_info(*slot)
                    .is_ok_and(|info| info.token_initialized() && info.label() == self.label)
            })
            .with_context(|| format!("token {:?} not found", self.label))?;
        let session = context.open_rw_session(slot)?;
        match session.login(UserType::User, Some(&AuthPin::from(self.pin.clone()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(error) => bail!("logging in to {:?}: {error}", self.label),
        }
        Ok(session)
    }

    /// Logs this process out of the token: PKCS#11 login state belongs to the application, so
    /// every session of this process on the token loses it (as after a token reset).
    pub fn log_out_everywhere(&self) -> Result<()> {
        self.session()?.logout()?;
        Ok(())
    }

    /// Generates a key pair of `kind` in the token, labelled `label` with `CKA_ID` `id`; the
    /// private key is sensitive and not extractable. Returns the public key as DER SPKI, read
    /// from the token's public key object.
    pub fn generate_key(&self, kind: KeyKind, label: &str, id: &[u8]) -> Result<Vec<u8>> {
        let session = self.session()?;
        let (mechanism, params) = match kind {
            // prime256v1
            KeyKind::EcdsaP256 => (
                Mechanism::EccKeyPairGen,
                vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            ),
            // id-Ed25519 (RFC 8410)
            KeyKind::Ed25519 => (
                Mechanism::EccEdwardsKeyPairGen,
                vec![0x06, 0x03, 0x2b, 0x65, 0x70],
            ),
        };
        let common = [
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        let mut public_template = common.to_vec();
        public_template.extend([Attribute::Verify(true), Attribute::EcParams(params)]);
        let mut private_template = common.to_vec();
        private_template.extend([
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
        ]);
        let (public, _private) = session
            .generate_key_pair(&mechanism, &public_template, &private_template)
            .with_context(|| format!("generating a {kind:?} key pair in {:?}", self.label))?;
        let point = session
            .get_attributes(public, &[AttributeType::EcPoint])?
            .into_iter()
            .find_map(|attribute| match attribute {
                Attribute::EcPoint(point) => Some(point),
                _ => None,
            })
            .context("the public key has no CKA_EC_POINT")?;
        spki_of_point(kind, &point)
    }

    /// Deletes every object labelled `label` (both halves of a key pair).
    pub fn delete_key(&self, label: &str) -> Result<()> {
        let session = self.session()?;
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            for object in session.find_objects(&[
                Attribute::Class(class),
                Attribute::Label(label.as_bytes().to_vec()),
            ])? {
                session.destroy_object(object)?;
            }
        }
        Ok(())
    }

    /// The `pkcs11:` URI of key `object` in this token, with the module path and the PIN given
    /// by `pin_query` (e.g. `pin-value=...` or `pin-source=...`).
    pub fn uri(&self, object: &str, pin_query: &str) -> String {
        format!(
            "pkcs11:token={};object={}?module-path={}&{pin_query}",
            percent_encode(&self.label),
            percent_encode(object),
            percent_encode(&self.hsm.module.display().to_string()),
        )
    }
}

/// The DER SPKI of a `CKA_EC_POINT` (a DER OCTET STRING around the point).
fn spki_of_point(kind: KeyKind, ec_point: &[u8]) -> Result<Vec<u8>> {
    use p256::pkcs8::EncodePublicKey;
    let point = match ec_point {
        [0x04, len, point @ ..] if usize::from(*len) == point.len() => point,
        _ => bail!("CKA_EC_POINT is not a short DER OCTET STRING"),
    };
    match kind {
        KeyKind::EcdsaP256 => Ok(p256::PublicKey::from_sec1_bytes(point)?
            .to_public_key_der()?
            .into_vec()),
        KeyKind::Ed25519 => {
            if point.len() != 32 {
                bail!("an Ed25519 point of {} bytes", point.len());
            }
            // SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING { 0 unused bits, key } }
            let mut der = vec![
                0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
            ];
            der.extend_from_slice(point);
            Ok(der)
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
