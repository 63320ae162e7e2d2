//! Bittensor wallets on disk and sr25519 keys, in btcli's layout:
//! `~/.bittensor/wallets/<wallet>/{coldkey, coldkeypub.txt, hotkeys/<hotkey>, hotkeys/<hotkey>pub.txt}`
//! (JSON: secretPhrase, secretSeed, publicKey, privateKey, accountId, ss58Address, cryptoType;
//! the `pub` files carry the public half only); SS58 addresses (prefix 42);
//! signatures with the `substrate` context. Secrets never reach a log line: `Debug` shows the
//! address only. Encrypted keyfiles (`$NACL…`, written by btcli with a password) are
//! recognised and refused: a neuron needs its hotkey unencrypted.

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
    #[error(
        "key file {path} is encrypted; a neuron needs its hotkey unencrypted (btcli: `btcli wallet regen-hotkey --no-use-password`, or `agentao subnet create-hotkey` for a new one)"
    )]
    Encrypted { path: String },
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

impl WalletError {
    /// Whether the error is about the user's files (missing, too open, unreadable,
    /// encrypted) rather than the machine.
    pub fn is_users(&self) -> bool {
        !matches!(self, WalletError::Io { .. })
    }
}

/// A hotkey or coldkey file as the Bittensor SDK writes it (unencrypted); the `pub` files
/// leave the secrets out. `cryptoType` 1 is sr25519, the only type agentao signs with.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crypto_type: Option<u8>,
}

/// The SDK's `cryptoType` of sr25519 keys.
const SR25519: u8 = 1;

impl Keyfile {
    /// The full keyfile of a pair made from `seed` (and its phrase).
    fn secret(pair: &Keypair, seed: &[u8; 32], phrase: String) -> Keyfile {
        Keyfile {
            secret_phrase: Some(phrase),
            secret_seed: Some(pair.seed_hex(seed)),
            private_key: Some(format!(
                "0x{}",
                hex::encode(pair.inner.secret.to_ed25519_bytes())
            )),
            ..Keyfile::public(pair)
        }
    }

    /// The public half (`coldkeypub.txt`, `hotkeys/<name>pub.txt`).
    fn public(pair: &Keypair) -> Keyfile {
        let public = format!("0x{}", hex::encode(pair.public()));
        Keyfile {
            secret_phrase: None,
            secret_seed: None,
            private_key: None,
            public_key: public.clone(),
            account_id: public,
            ss58_address: pair.ss58(),
            crypto_type: Some(SR25519),
        }
    }
}

/// A new key pair with its seed and phrase, derived as Substrate does.
fn new_pair() -> (Keypair, [u8; 32], String) {
    let (_, phrase) = Keypair::generate();
    let m = bip39::Mnemonic::parse_in(bip39::Language::English, &phrase).expect("fresh");
    let mini =
        substrate_bip39::mini_secret_from_entropy(&m.to_entropy(), "").expect("valid entropy");
    let seed: [u8; 32] = mini.to_bytes();
    (Keypair::from_seed(&seed), seed, phrase)
}

/// What [`Wallet::create_hotkey`] made.
#[derive(Debug)]
pub struct Created {
    pub hotkey: Keypair,
    /// The wallet's coldkey address (`coldkeypub.txt`).
    pub coldkey: String,
    /// The coldkey was made now (the wallet had none), unencrypted in `coldkey`.
    pub new_coldkey: bool,
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

    /// `hotkeys/<hotkey>pub.txt`, the hotkey's public half.
    pub fn hotkeypub_path(&self) -> PathBuf {
        self.root
            .join(&self.name)
            .join("hotkeys")
            .join(format!("{}pub.txt", self.hotkey))
    }

    pub fn coldkey_path(&self) -> PathBuf {
        self.root.join(&self.name).join("coldkey")
    }

    pub fn coldkeypub_path(&self) -> PathBuf {
        self.root.join(&self.name).join("coldkeypub.txt")
    }

    /// The coldkey's SS58 address from `coldkeypub.txt`.
    pub fn coldkey_ss58(&self) -> Result<String, WalletError> {
        let path = self.coldkeypub_path();
        let shown = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => WalletError::Missing {
                path: shown.clone(),
            },
            _ => WalletError::Io {
                path: shown.clone(),
                source: e,
            },
        })?;
        let file: Keyfile =
            serde_json::from_slice(&bytes).map_err(|e| WalletError::BadKeyfile {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        ss58_decode(&file.ss58_address)?;
        Ok(file.ss58_address)
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
        if is_encrypted(&bytes) {
            return Err(WalletError::Encrypted { path: shown });
        }
        let file: Keyfile = serde_json::from_slice(&bytes).map_err(|_| bad("not JSON"))?;
        if let Some(t) = file.crypto_type.filter(|t| *t != SR25519) {
            return Err(bad(&format!("cryptoType {t} is not sr25519 (1)")));
        }
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

    /// Creates a new hotkey in btcli's layout: `hotkeys/<hotkey>` (mode 0600) and
    /// `hotkeys/<hotkey>pub.txt`; returns the key pair. Refuses to overwrite. A wallet without
    /// a coldkey gets one too (see [`Wallet::create`]).
    pub fn create_hotkey(&self) -> Result<Keypair, WalletError> {
        self.create().map(|c| c.hotkey)
    }

    /// [`Wallet::create_hotkey`], saying what was made. When the wallet has no
    /// `coldkeypub.txt`, a new coldkey is written as btcli's `--no-use-password` writes one
    /// (`coldkey`, mode 0600, and `coldkeypub.txt`), so the SDK and btcli see a wallet whose
    /// coldkey owns the hotkey; an existing coldkey is left alone.
    pub fn create(&self) -> Result<Created, WalletError> {
        let path = self.hotkey_path();
        let shown = path.display().to_string();
        if path.exists() {
            return Err(WalletError::BadKeyfile {
                path: shown,
                reason: "exists already; refusing to overwrite".into(),
            });
        }
        let dir = path.parent().expect("has a parent");
        std::fs::create_dir_all(dir).map_err(|e| WalletError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        let (pair, seed, phrase) = new_pair();
        let (coldkey, new_coldkey) = if self.coldkeypub_path().exists() {
            (self.coldkey_ss58()?, false)
        } else if self.coldkey_path().exists() {
            return Err(WalletError::BadKeyfile {
                path: self.coldkey_path().display().to_string(),
                reason: "the wallet has a coldkey but no coldkeypub.txt; write it with `btcli wallet regen-coldkeypub`".into(),
            });
        } else {
            let (cold, cold_seed, cold_phrase) = new_pair();
            write_keyfile(
                &self.coldkey_path(),
                &Keyfile::secret(&cold, &cold_seed, cold_phrase),
            )?;
            write_keyfile(&self.coldkeypub_path(), &Keyfile::public(&cold))?;
            (cold.ss58(), true)
        };
        write_keyfile(&path, &Keyfile::secret(&pair, &seed, phrase))?;
        // A `pub` file left by an earlier hotkey of this name would name the wrong key.
        let pubfile = self.hotkeypub_path();
        let _ = std::fs::remove_file(&pubfile);
        write_keyfile(&pubfile, &Keyfile::public(&pair))?;
        Ok(Created {
            hotkey: pair,
            coldkey,
            new_coldkey,
        })
    }
}

/// Whether keyfile bytes are encrypted as the SDK encrypts them (NaCl secretbox, Ansible
/// vault, or the legacy Fernet token).
fn is_encrypted(bytes: &[u8]) -> bool {
    [b"$NACL".as_slice(), b"$ANSIBLE_VAULT", b"gAAAAA"]
        .iter()
        .any(|p| bytes.starts_with(p))
}

/// Writes a keyfile (mode 0600), refusing to overwrite one.
fn write_keyfile(path: &Path, file: &Keyfile) -> Result<(), WalletError> {
    write_private(path, &serde_json::to_vec(file).expect("serialisable")).map_err(|e| {
        WalletError::Io {
            path: path.display().to_string(),
            source: e,
        }
    })
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

    #[test]
    fn a_new_wallet_has_its_own_coldkey_and_public_files_in_btclis_layout() {
        let dir = tempfile::tempdir().unwrap();
        let w = Wallet::new(dir.path(), "w", "h");
        let made = w.create().unwrap();
        assert!(made.new_coldkey);
        assert_ne!(
            made.coldkey,
            made.hotkey.ss58(),
            "the coldkey is not the hotkey"
        );
        assert_eq!(w.coldkey_ss58().unwrap(), made.coldkey);
        let public: serde_json::Value =
            serde_json::from_slice(&std::fs::read(w.hotkeypub_path()).unwrap()).unwrap();
        assert_eq!(public["ss58Address"], made.hotkey.ss58());
        assert!(public.get("secretPhrase").is_none() && public.get("privateKey").is_none());
        assert_eq!(public["cryptoType"], 1);
        // A second hotkey joins the same coldkey.
        let second = Wallet::new(dir.path(), "w", "h2").create().unwrap();
        assert!(!second.new_coldkey);
        assert_eq!(second.coldkey, made.coldkey);
        assert!(w.create().is_err(), "no overwrite");
    }

    #[test]
    fn an_encrypted_hotkey_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let w = Wallet::new(dir.path(), "w", "h");
        std::fs::create_dir_all(w.hotkey_path().parent().unwrap()).unwrap();
        write_private(&w.hotkey_path(), b"$NACL\x01\x02").unwrap();
        let err = w.load_hotkey().unwrap_err();
        assert!(matches!(err, WalletError::Encrypted { .. }), "{err}");
        assert!(err.is_users());
    }
}
