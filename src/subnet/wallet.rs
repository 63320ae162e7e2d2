//! Bittensor wallets on disk and sr25519 keys: `~/.bittensor/wallets/<wallet>/hotkeys/<hotkey>`
//! (JSON: secretPhrase, secretSeed, publicKey, privateKey, accountId, ss58Address) and
//! `coldkeypub.txt`; SS58 addresses (prefix 42); signatures with the `substrate` context.
//! Secrets never reach a log line: `Debug` shows the address only.

use std::path::{Path, PathBuf};

use blake2::{Blake2b512, Digest};
use schnorrkel::{ExpansionMode, MiniSecretKey, PublicKey, Signature};
use serde::{Deserialize, Serialize};

/// The SS58 prefix of Bittensor (generic Substrate).
pub const SS58_PREFIX: u8 = 42;
const SIGNING_CONTEXT: &[u8] = b"substrate";

/// Errors reading, writing or using keys.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("key file {path} is missing (create it with `agentao subnet create-hotkey` or btcli)")]
    Missing { path: String },
    #[error("key file {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen { path: String, mode: u32 },
    #[error("key file {path} is not a usable keyfile: {reason}")]
    BadKeyfile { path: String, reason: String },
    #[error("{0:?} is not an SS58 address")]
    BadAddress(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// An sr25519 key pair.
#[derive(Clone)]
pub struct Keypair {
    inner: schnorrkel::Keypair,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.ss58())
    }
}

impl Keypair {
    /// The key pair of a 32-byte mini secret (Substrate's `secretSeed`).
    pub fn from_seed(seed: &[u8; 32]) -> Keypair {
        let mini = MiniSecretKey::from_bytes(seed).expect("32 bytes");
        Keypair {
            inner: mini.expand_to_keypair(ExpansionMode::Ed25519),
        }
    }

    /// The key pair of a BIP39 phrase, derived as Substrate does (entropy, not the phrase,
    /// through PBKDF2).
    pub fn from_phrase(phrase: &str) -> Result<Keypair, String> {
        let m = bip39::Mnemonic::parse_in(bip39::Language::English, phrase)
            .map_err(|e| e.to_string())?;
        let mini = substrate_bip39::mini_secret_from_entropy(&m.to_entropy(), "")
            .map_err(|e| format!("{e:?}"))?;
        Ok(Keypair {
            inner: mini.expand_to_keypair(ExpansionMode::Ed25519),
        })
    }

    /// A new random key pair and its 12-word phrase.
    pub fn generate() -> (Keypair, String) {
        let mut entropy = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut entropy);
        let m = bip39::Mnemonic::from_entropy(&entropy).expect("16 bytes of entropy");
        let phrase = m.to_string();
        (
            Keypair::from_phrase(&phrase).expect("a fresh phrase"),
            phrase,
        )
    }

    pub fn public(&self) -> [u8; 32] {
        self.inner.public.to_bytes()
    }

    pub fn ss58(&self) -> String {
        ss58_encode(&self.public())
    }

    /// Signs `message` with the `substrate` context.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let ctx = schnorrkel::signing_context(SIGNING_CONTEXT);
        self.inner.sign(ctx.bytes(message)).to_bytes()
    }

    fn seed_hex(&self, seed: &[u8; 32]) -> String {
        format!("0x{}", hex::encode(seed))
    }
}

/// Checks an sr25519 signature (`substrate` context) by the key behind `ss58`.
pub fn verify(ss58: &str, message: &[u8], signature: &[u8]) -> bool {
    let Ok(public) = ss58_decode(ss58) else {
        return false;
    };
    let (Ok(pk), Ok(sig)) = (
        PublicKey::from_bytes(&public),
        Signature::from_bytes(signature),
    ) else {
        return false;
    };
    pk.verify(
        schnorrkel::signing_context(SIGNING_CONTEXT).bytes(message),
        &sig,
    )
    .is_ok()
}

fn ss58_checksum(data: &[u8]) -> [u8; 2] {
    let mut h = Blake2b512::new();
    h.update(b"SS58PRE");
    h.update(data);
    let out = h.finalize();
    [out[0], out[1]]
}

/// SS58 address (prefix 42) of a public key.
pub fn ss58_encode(public: &[u8; 32]) -> String {
    let mut data = Vec::with_capacity(35);
    data.push(SS58_PREFIX);
    data.extend_from_slice(public);
    let sum = ss58_checksum(&data);
    data.extend_from_slice(&sum);
    bs58::encode(data).into_string()
}

/// The public key of an SS58 address with prefix 42.
pub fn ss58_decode(address: &str) -> Result<[u8; 32], WalletError> {
    let bad = || WalletError::BadAddress(address.to_owned());
    let data = bs58::decode(address).into_vec().map_err(|_| bad())?;
    if data.len() != 35 || data[0] != SS58_PREFIX {
        return Err(bad());
    }
    if ss58_checksum(&data[..33]) != data[33..35] {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&data[1..33]);
    Ok(out)
}

/// A hotkey or coldkey file as the Bittensor SDK writes it (unencrypted).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Keyfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_phrase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_seed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    private_key: Option<String>,
    public_key: String,
    account_id: String,
    ss58_address: String,
}

/// A wallet directory: `<root>/<name>` with `hotkeys/<hotkey>` and `coldkeypub.txt`.
#[derive(Debug, Clone)]
pub struct Wallet {
    pub root: PathBuf,
    pub name: String,
    pub hotkey: String,
}

impl Wallet {
    pub fn new(root: &Path, name: &str, hotkey: &str) -> Wallet {
        Wallet {
            root: root.to_path_buf(),
            name: name.to_owned(),
            hotkey: hotkey.to_owned(),
        }
    }

    pub fn hotkey_path(&self) -> PathBuf {
        self.root
            .join(&self.name)
            .join("hotkeys")
            .join(&self.hotkey)
    }

    pub fn coldkeypub_path(&self) -> PathBuf {
        self.root.join(&self.name).join("coldkeypub.txt")
    }

    /// Loads the hotkey (the only key a running neuron needs), refusing a file others can
    /// read.
    pub fn load_hotkey(&self) -> Result<Keypair, WalletError> {
        let path = self.hotkey_path();
        let shown = path.display().to_string();
        let meta = std::fs::metadata(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => WalletError::Missing {
                path: shown.clone(),
            },
            _ => WalletError::Io {
                path: shown.clone(),
                source: e,
            },
        })?;
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(WalletError::TooOpen { path: shown, mode });
        }
        let bytes = std::fs::read(&path).map_err(|e| WalletError::Io {
            path: shown.clone(),
            source: e,
        })?;
        let bad = |reason: &str| WalletError::BadKeyfile {
            path: shown.clone(),
            reason: reason.to_owned(),
        };
        let file: Keyfile = serde_json::from_slice(&bytes)
            .map_err(|_| bad("not JSON (encrypted hotkeys are not supported)"))?;
        let pair = if let Some(seed) = &file.secret_seed {
            let raw = hex::decode(seed.trim_start_matches("0x"))
                .map_err(|_| bad("secretSeed is not hex"))?;
            let seed: [u8; 32] = raw
                .try_into()
                .map_err(|_| bad("secretSeed is not 32 bytes"))?;
            Keypair::from_seed(&seed)
        } else if let Some(phrase) = &file.secret_phrase {
            Keypair::from_phrase(phrase).map_err(|e| bad(&e))?
        } else {
            return Err(bad("no secretSeed or secretPhrase"));
        };
        if pair.ss58() != file.ss58_address {
            return Err(bad("the secret does not match ss58Address"));
        }
        Ok(pair)
    }

    /// Creates a new hotkey file (mode 0600) and, if missing, a coldkeypub.txt for it; returns
    /// the key pair. Refuses to overwrite.
    pub fn create_hotkey(&self) -> Result<Keypair, WalletError> {
        let path = self.hotkey_path();
        let shown = path.display().to_string();
        let io = |e| WalletError::Io {
            path: shown.clone(),
            source: e,
        };
        if path.exists() {
            return Err(WalletError::BadKeyfile {
                path: shown,
                reason: "exists already; refusing to overwrite".into(),
            });
        }
        std::fs::create_dir_all(path.parent().expect("has a parent")).map_err(io)?;
        let (_, phrase) = Keypair::generate();
        let m = bip39::Mnemonic::parse_in(bip39::Language::English, &phrase).expect("fresh");
        let mini =
            substrate_bip39::mini_secret_from_entropy(&m.to_entropy(), "").expect("valid entropy");
        let seed: [u8; 32] = mini.to_bytes();
        let pair = Keypair::from_seed(&seed);
        let public = format!("0x{}", hex::encode(pair.public()));
        let file = Keyfile {
            secret_phrase: Some(phrase),
            secret_seed: Some(pair.seed_hex(&seed)),
            private_key: Some(format!(
                "0x{}",
                hex::encode(pair.inner.secret.to_ed25519_bytes())
            )),
            public_key: public.clone(),
            account_id: public.clone(),
            ss58_address: pair.ss58(),
        };
        write_private(&path, &serde_json::to_vec(&file).expect("serialisable")).map_err(io)?;
        let cold = self.coldkeypub_path();
        if !cold.exists() {
            let pubfile = serde_json::json!({"accountId": public, "publicKey": public,
                "ss58Address": pair.ss58()});
            std::fs::write(&cold, pubfile.to_string()).map_err(|e| WalletError::Io {
                path: cold.display().to_string(),
                source: e,
            })?;
        }
        Ok(pair)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_substrate_dev_phrase_gives_alices_address() {
        // Substrate's well-known development phrase (`//Alice` is derived from it; the bare
        // phrase is the "default" dev account) and its published SS58 address.
        let pair = Keypair::from_phrase(
            "bottom drive obey lake curtain smoke basket hold race lonely fit walk",
        )
        .unwrap();
        assert_eq!(
            pair.ss58(),
            "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"
        );
    }

    #[test]
    fn addresses_round_trip_and_signatures_verify() {
        let (pair, phrase) = Keypair::generate();
        assert_eq!(phrase.split_whitespace().count(), 12);
        let addr = pair.ss58();
        assert_eq!(ss58_decode(&addr).unwrap(), pair.public());
        let sig = pair.sign(b"hello");
        assert!(verify(&addr, b"hello", &sig));
        assert!(!verify(&addr, b"hellO", &sig));
        let mut broken = addr.clone().into_bytes();
        broken[10] = if broken[10] == b'a' { b'b' } else { b'a' };
        assert!(ss58_decode(std::str::from_utf8(&broken).unwrap()).is_err());
        assert!(!format!("{pair:?}").contains(&phrase));
    }

    #[test]
    fn hotkeys_are_created_private_and_open_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let w = Wallet::new(dir.path(), "w", "h");
        assert!(matches!(w.load_hotkey(), Err(WalletError::Missing { .. })));
        let made = w.create_hotkey().unwrap();
        let loaded = w.load_hotkey().unwrap();
        assert_eq!(made.ss58(), loaded.ss58());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(w.hotkey_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = w.load_hotkey().unwrap_err();
        assert!(matches!(err, WalletError::TooOpen { .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"));
    }
}
