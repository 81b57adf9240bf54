//! One logged-in session with the token, kept open between signatures and opened again after
//! it is lost (the token was removed, the module restarted, the login state went away).
//!
//! Every function here blocks on the module: callers run them on the blocking pool.
//!
//! A module is loaded and initialised once per process (`C_Initialize` is process-wide, and a
//! second one fails), so loaded modules are kept in [`module`]'s table; if something else in
//! the process initialised the module already, that is fine too. Nothing here finalises it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::RawAuthPin;

use super::spki::{spki_from_attributes, TokenKeyType};
use super::uri::{Pin, Pkcs11Uri};
use crate::{KeyAlgorithm, SignerError};

/// The module at `path`, loaded and initialised once per process.
pub fn module(path: &Path) -> Result<Pkcs11, SignerError> {
    static MODULES: Mutex<Option<HashMap<PathBuf, Pkcs11>>> = Mutex::new(None);
    let mut modules = MODULES.lock().unwrap_or_else(PoisonError::into_inner);
    let modules = modules.get_or_insert_with(HashMap::new);
    if let Some(context) = modules.get(path) {
        return Ok(context.clone());
    }
    let context = Pkcs11::new(path).map_err(|error| {
        SignerError::Config(format!(
            "loading the PKCS#11 module {}: {error}",
            path.display()
        ))
    })?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(error) => {
            return Err(SignerError::Config(format!(
                "initialising the PKCS#11 module {}: {error}",
                path.display()
            )))
        }
    }
    modules.insert(path.to_path_buf(), context.clone());
    Ok(context)
}

/// How the token signs for each key type.
#[derive(Debug, Clone, Copy)]
pub enum SignMechanism {
    /// `CKM_ECDSA` over a digest the caller computed: the result is `r ‖ s`.
    Ecdsa,
    /// `CKM_EDDSA` (pure Ed25519) over the message.
    Eddsa,
}

/// The key's public half, read when the token was opened.
pub struct PublicKey {
    pub algorithm: KeyAlgorithm,
    pub spki: Vec<u8>,
}

/// The token, the key in it, and the live session if there is one.
pub struct Token {
    context: Pkcs11,
    uri: Pkcs11Uri,
    live: Option<Live>,
    /// A PIN the token rejected: not tried again (tokens lock after a few wrong PINs) until the
    /// PIN file says something else.
    rejected_pin: Option<Vec<u8>>,
}

struct Live {
    session: Session,
    private_key: ObjectHandle,
}

/// What went wrong on the way to a session, before it is sorted into a [`SignerError`]: the
/// same failure is a configuration error when a node starts and something to wait out or
/// report while it runs.
enum Failure {
    /// No token matches the URI.
    NoToken(String),
    /// No key in the token matches the URI.
    NoKey(String),
    /// The key is not one a log can sign with.
    Unsupported(String),
    /// The URI matches more than one token or key.
    Ambiguous(String),
    /// The PIN is wrong, locked, or cannot be read.
    Pin(String),
    /// The module answered with something else.
    Module {
        error: String,
        lost: bool,
        refused: bool,
    },
}

impl Failure {
    fn from_module(what: &str, error: CkError) -> Self {
        let (lost, refused) = sort(&error);
        Failure::Module {
            error: format!("{what}: {error}"),
            lost,
            refused,
        }
    }

    /// As an error of opening the backend (a node starting): the operator must fix it.
    fn at_open(self) -> SignerError {
        match self {
            Failure::NoToken(message)
            | Failure::NoKey(message)
            | Failure::Ambiguous(message)
            | Failure::Pin(message) => SignerError::Config(message),
            Failure::Unsupported(message) => SignerError::UnsupportedKey(message),
            Failure::Module {
                error,
                lost,
                refused,
            } => {
                if lost || !refused {
                    SignerError::Unavailable(error)
                } else {
                    SignerError::Config(error)
                }
            }
        }
    }

    /// As an error of a signature after the session was lost: a token that is gone may come
    /// back; a key that is gone or a PIN that is wrong needs an operator.
    fn at_sign(self) -> SignerError {
        match self {
            Failure::NoToken(message) => SignerError::Unavailable(message),
            Failure::NoKey(message)
            | Failure::Ambiguous(message)
            | Failure::Pin(message)
            | Failure::Unsupported(message) => SignerError::Refused(message),
            Failure::Module { error, refused, .. } => {
                if refused {
                    SignerError::Refused(error)
                } else {
                    SignerError::Unavailable(error)
                }
            }
        }
    }
}

/// Sorts a module error: (the session is lost and must be opened again, the token refuses and
/// retrying will not help).
fn sort(error: &CkError) -> (bool, bool) {
    let CkError::Pkcs11(rv, _) = error else {
        return (false, false);
    };
    match rv {
        RvError::SessionHandleInvalid
        | RvError::SessionClosed
        | RvError::DeviceRemoved
        | RvError::DeviceError
        | RvError::DeviceMemory
        | RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::UserNotLoggedIn
        | RvError::CryptokiNotInitialized
        | RvError::KeyHandleInvalid
        | RvError::ObjectHandleInvalid
        | RvError::OperationActive
        | RvError::GeneralError
        | RvError::FunctionFailed => (true, false),
        RvError::PinIncorrect
        | RvError::PinInvalid
        | RvError::PinLenRange
        | RvError::PinExpired
        | RvError::PinLocked
        | RvError::UserPinNotInitialized
        | RvError::KeyFunctionNotPermitted
        | RvError::KeyTypeInconsistent
        | RvError::MechanismInvalid
        | RvError::MechanismParamInvalid
        | RvError::FunctionNotSupported
        | RvError::ActionProhibited => (false, true),
        _ => (false, false),
    }
}

impl Token {
    /// Opens a session with the token `uri` names, logs in and finds the key pair; gives the
    /// public key.
    pub fn open(context: Pkcs11, uri: Pkcs11Uri) -> Result<(Self, PublicKey), SignerError> {
        let mut token = Self {
            context,
            uri,
            live: None,
            rejected_pin: None,
        };
        let live = token.connect().map_err(Failure::at_open)?;
        let public = token
            .read_public_key(&live.session)
            .map_err(Failure::at_open)?;
        token.live = Some(live);
        Ok((token, public))
    }

    /// Signs `data` with the key, opening a session first if the last one was lost. A failure
    /// that means the session is gone drops it, so that the next call starts afresh.
    pub fn sign(&mut self, mechanism: SignMechanism, data: &[u8]) -> Result<Vec<u8>, SignerError> {
        let live = match self.live.take() {
            Some(live) => live,
            None => self.connect().map_err(Failure::at_sign)?,
        };
        let mechanism = match mechanism {
            SignMechanism::Ecdsa => Mechanism::Ecdsa,
            SignMechanism::Eddsa => Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
        };
        match live.session.sign(&mechanism, live.private_key, data) {
            Ok(signature) => {
                self.live = Some(live);
                Ok(signature)
            }
            Err(error) => {
                let (lost, _) = sort(&error);
                if !lost {
                    self.live = Some(live);
                }
                Err(Failure::from_module("signing", error).at_sign())
            }
        }
    }

    /// A new session: the token, a login if the URI gives a PIN, the private key's handle.
    fn connect(&mut self) -> Result<Live, Failure> {
        let slot = self.find_slot()?;
        let session = self
            .context
            .open_ro_session(slot)
            .map_err(|error| Failure::from_module("opening a session", error))?;
        self.login(&session)?;
        let private_key = self.find_key(&session, ObjectClass::PRIVATE_KEY)?;
        Ok(Live {
            session,
            private_key,
        })
    }

    fn find_slot(&self) -> Result<Slot, Failure> {
        let slots = self
            .context
            .get_slots_with_token()
            .map_err(|error| Failure::from_module("listing slots", error))?;
        let mut matching = Vec::new();
        for slot in slots {
            if self.uri.slot_id.is_some_and(|id| slot.id() != id) {
                continue;
            }
            let info = self
                .context
                .get_token_info(slot)
                .map_err(|error| Failure::from_module("reading token information", error))?;
            // An uninitialised token (SoftHSM always offers one) holds no key.
            if !info.token_initialized() {
                continue;
            }
            if self
                .uri
                .token
                .as_deref()
                .is_some_and(|label| info.label() != label)
            {
                continue;
            }
            matching.push(slot);
        }
        match matching.as_slice() {
            [slot] => Ok(*slot),
            [] => Err(Failure::NoToken(format!(
                "no token{}{} in the module",
                self.uri
                    .token
                    .as_deref()
                    .map(|label| format!(" labelled {label:?}"))
                    .unwrap_or_default(),
                self.uri
                    .slot_id
                    .map(|id| format!(" in slot {id}"))
                    .unwrap_or_default(),
            ))),
            _ => Err(Failure::Ambiguous(format!(
                "{} tokens match; name one with token= or slot-id=",
                matching.len()
            ))),
        }
    }

    fn login(&mut self, session: &Session) -> Result<(), Failure> {
        let pin = match &self.uri.pin {
            None => return Ok(()),
            Some(Pin::Value(pin)) => pin.clone(),
            Some(Pin::File(path)) => crate::file::read_password_file(path)
                .map_err(|error| Failure::Pin(error.to_string()))?,
        };
        if self.rejected_pin.as_ref() == Some(&pin) {
            return Err(Failure::Pin(
                "the token rejected this PIN before; not trying it again until it changes".into(),
            ));
        }
        match session.login_with_raw(UserType::User, &RawAuthPin::new(Box::new(pin.clone()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(CkError::Pkcs11(
                rv @ (RvError::PinIncorrect
                | RvError::PinInvalid
                | RvError::PinLenRange
                | RvError::PinExpired
                | RvError::PinLocked),
                _,
            )) => {
                self.rejected_pin = Some(pin);
                Err(Failure::Pin(format!("logging in to the token: {rv}")))
            }
            Err(error) => Err(Failure::from_module("logging in to the token", error)),
        }
    }

    /// The one object of `class` with the URI's label and id.
    fn find_key(&self, session: &Session, class: ObjectClass) -> Result<ObjectHandle, Failure> {
        let mut template = vec![Attribute::Class(class)];
        if let Some(label) = &self.uri.object {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &self.uri.id {
            template.push(Attribute::Id(id.clone()));
        }
        let kind = if class == ObjectClass::PRIVATE_KEY {
            "private"
        } else {
            "public"
        };
        let found = session
            .find_objects(&template)
            .map_err(|error| Failure::from_module("finding the key", error))?;
        match found.as_slice() {
            [key] => Ok(*key),
            [] => Err(Failure::NoKey(format!(
                "the token has no {kind} key{}{}{}",
                self.uri
                    .object
                    .as_deref()
                    .map(|label| format!(" labelled {label:?}"))
                    .unwrap_or_default(),
                self.uri
                    .id
                    .as_deref()
                    .map(|id| format!(" with id {}", percent_encode(id)))
                    .unwrap_or_default(),
                if kind == "private" && self.uri.pin.is_none() {
                    " (private keys are only visible after a login: give pin-source or pin-value)"
                } else {
                    ""
                },
            ))),
            _ => Err(Failure::Ambiguous(format!(
                "{} {kind} keys match; name one with object= and id=",
                found.len()
            ))),
        }
    }

    fn read_public_key(&self, session: &Session) -> Result<PublicKey, Failure> {
        let handle = self.find_key(session, ObjectClass::PUBLIC_KEY)?;
        let attributes = session
            .get_attributes(
                handle,
                &[
                    AttributeType::KeyType,
                    AttributeType::EcParams,
                    AttributeType::EcPoint,
                ],
            )
            .map_err(|error| Failure::from_module("reading the public key", error))?;
        let (mut key_type, mut params, mut point) = (None, None, None);
        for attribute in attributes {
            match attribute {
                Attribute::KeyType(value) => key_type = Some(value),
                Attribute::EcParams(value) => params = Some(value),
                Attribute::EcPoint(value) => point = Some(value),
                _ => {}
            }
        }
        let unsupported = Failure::Unsupported;
        let key_type = match key_type {
            Some(KeyType::EC) => TokenKeyType::Ec,
            Some(KeyType::EC_EDWARDS) => TokenKeyType::EcEdwards,
            Some(other) => {
                return Err(unsupported(format!(
                    "the key is a {other} key, not ECDSA P-256 or Ed25519"
                )))
            }
            None => return Err(unsupported("the public key has no CKA_KEY_TYPE".into())),
        };
        let (Some(params), Some(point)) = (params, point) else {
            return Err(unsupported(
                "the public key has no CKA_EC_PARAMS or CKA_EC_POINT".into(),
            ));
        };
        let (algorithm, spki) = spki_from_attributes(key_type, &params, &point)
            .map_err(|error| unsupported(error.to_string()))?;
        Ok(PublicKey { algorithm, spki })
    }
}

/// An id as RFC 7512 writes it, for messages.
fn percent_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("%{byte:02x}")).collect()
}
