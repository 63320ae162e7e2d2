//! What the client reads from the runtime's metadata (V14, as `state_getMetadata` returns it):
//! pallet and call indices, storage hashers and the signed-extension list, plus a small
//! encoder that writes values by their metadata type. Nothing here is hard-wired to one runtime
//! version: a runtime upgrade that moves a call or adds an extension is followed, and one this
//! client cannot fill in is refused with a clear error instead of a rejected transaction.

use frame_metadata::{RuntimeMetadata, RuntimeMetadataPrefixed, v14};
use parity_scale_codec::{Compact, Decode, Encode};
use scale_info::{PortableRegistry, TypeDef, TypeDefPrimitive, form::PortableForm};

use crate::subnet::chain::ChainError;

/// A value to encode against a metadata type.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// Nothing: the type must be empty (`()` or a struct without fields).
    Unit,
    /// An unsigned integer (or a bool as 0/1), fixed-width or compact as the type says.
    U(u128),
    /// Bytes for `[u8; N]` or `Vec<u8>` (also through newtypes such as `H256`).
    Bytes(Vec<u8>),
    /// Items of a sequence, or fields of a struct/tuple in order.
    Seq(Vec<Arg>),
    /// A variant without fields, by name (`None`, `Disabled`).
    Variant(&'static str),
    /// Already-encoded bytes, written as they are.
    Raw(Vec<u8>),
}

/// How a storage key part is hashed.
pub type Hasher = v14::StorageHasher;

/// A call's place in the runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct CallLayout {
    pub pallet_index: u8,
    pub call_index: u8,
    /// Field names and their type ids, in order.
    pub fields: Vec<(String, u32)>,
}

/// One signed extension: its name and the types of its `extra` (in the extrinsic) and
/// `additional` (only in the signed payload) parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Extension {
    pub identifier: String,
    pub extra_ty: u32,
    pub additional_ty: u32,
}

/// The decoded metadata.
#[derive(Debug)]
pub struct Runtime {
    meta: v14::RuntimeMetadataV14,
}

fn runtime_err(msg: impl Into<String>) -> ChainError {
    ChainError::Runtime(msg.into())
}

impl Runtime {
    /// Decodes `RuntimeMetadataPrefixed` bytes (the `meta` magic, then the version).
    pub fn decode(bytes: &[u8]) -> Result<Runtime, ChainError> {
        let prefixed = RuntimeMetadataPrefixed::decode(&mut &bytes[..])
            .map_err(|e| ChainError::Decode(format!("runtime metadata: {e}")))?;
        if prefixed.0 != frame_metadata::META_RESERVED {
            return Err(ChainError::Decode(
                "runtime metadata: missing the `meta` magic".into(),
            ));
        }
        match prefixed.1 {
            RuntimeMetadata::V14(meta) => {
                if meta.extrinsic.version != 4 {
                    return Err(runtime_err(format!(
                        "extrinsic version {} (only 4 is supported)",
                        meta.extrinsic.version
                    )));
                }
                Ok(Runtime { meta })
            }
            other => Err(runtime_err(format!(
                "metadata version {} (state_getMetadata should give 14)",
                other.version()
            ))),
        }
    }

    pub fn registry(&self) -> &PortableRegistry {
        &self.meta.types
    }

    fn pallet(&self, name: &str) -> Result<&v14::PalletMetadata<PortableForm>, ChainError> {
        self.meta
            .pallets
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| runtime_err(format!("no pallet {name}")))
    }

    /// Where `pallet::call` lives and what it takes.
    pub fn call(&self, pallet: &str, call: &str) -> Result<CallLayout, ChainError> {
        let p = self.pallet(pallet)?;
        let calls = p
            .calls
            .as_ref()
            .ok_or_else(|| runtime_err(format!("pallet {pallet} has no calls")))?;
        let ty = self.resolve(calls.ty.id)?;
        let TypeDef::Variant(variants) = &ty.type_def else {
            return Err(runtime_err(format!("{pallet} calls are not an enum")));
        };
        let v = variants
            .variants
            .iter()
            .find(|v| v.name == call)
            .ok_or_else(|| runtime_err(format!("no call {pallet}::{call}")))?;
        Ok(CallLayout {
            pallet_index: p.index,
            call_index: v.index,
            fields: v
                .fields
                .iter()
                .map(|f| (f.name.clone().unwrap_or_default(), f.ty.id))
                .collect(),
        })
    }

    /// Encodes `pallet::call` with named arguments; every field of the call must be given.
    pub fn encode_call(
        &self,
        pallet: &str,
        call: &str,
        args: &[(&str, Arg)],
    ) -> Result<Vec<u8>, ChainError> {
        let layout = self.call(pallet, call)?;
        let mut out = vec![layout.pallet_index, layout.call_index];
        for (name, ty) in &layout.fields {
            let arg = args
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| a)
                .ok_or_else(|| {
                    runtime_err(format!(
                        "{pallet}::{call} takes `{name}`, which this client does not fill"
                    ))
                })?;
            self.encode(*ty, arg, &mut out)
                .map_err(|e| runtime_err(format!("{pallet}::{call}.{name}: {e}")))?;
        }
        Ok(out)
    }

    /// The storage prefix of `pallet` and its entry `entry`.
    fn storage_entry(
        &self,
        pallet: &str,
        entry: &str,
    ) -> Result<(&str, &v14::StorageEntryMetadata<PortableForm>), ChainError> {
        let p = self.pallet(pallet)?;
        let storage = p
            .storage
            .as_ref()
            .ok_or_else(|| runtime_err(format!("pallet {pallet} has no storage")))?;
        let e = storage
            .entries
            .iter()
            .find(|e| e.name == entry)
            .ok_or_else(|| runtime_err(format!("no storage {pallet}::{entry}")))?;
        Ok((&storage.prefix, e))
    }

    /// Whether this runtime has the storage entry `pallet::entry`.
    pub fn has_storage(&self, pallet: &str, entry: &str) -> bool {
        self.storage_entry(pallet, entry).is_ok()
    }

    /// The encoded value a node reads for `pallet::entry` where nothing is stored (the
    /// metadata's default: what the SDK's queries return then).
    pub fn storage_default(&self, pallet: &str, entry: &str) -> Result<Vec<u8>, ChainError> {
        Ok(self.storage_entry(pallet, entry)?.1.default.clone())
    }

    /// The storage key of `pallet::entry` for the given (already SCALE-encoded) key parts.
    pub fn storage_key(
        &self,
        pallet: &str,
        entry: &str,
        keys: &[Vec<u8>],
    ) -> Result<Vec<u8>, ChainError> {
        let (prefix, e) = self.storage_entry(pallet, entry)?;
        let hashers: &[Hasher] = match &e.ty {
            v14::StorageEntryType::Plain(_) => &[],
            v14::StorageEntryType::Map { hashers, .. } => hashers,
        };
        if hashers.len() != keys.len() {
            return Err(runtime_err(format!(
                "{pallet}::{entry} takes {} keys, {} given",
                hashers.len(),
                keys.len()
            )));
        }
        let mut out = twox_128(prefix.as_bytes()).to_vec();
        out.extend(twox_128(entry.as_bytes()));
        for (h, k) in hashers.iter().zip(keys) {
            out.extend(hash_key(h, k));
        }
        Ok(out)
    }

    /// The signed extensions, in the order their parts are concatenated.
    pub fn extensions(&self) -> Vec<Extension> {
        self.meta
            .extrinsic
            .signed_extensions
            .iter()
            .map(|e| Extension {
                identifier: e.identifier.clone(),
                extra_ty: e.ty.id,
                additional_ty: e.additional_signed.id,
            })
            .collect()
    }

    fn resolve(&self, id: u32) -> Result<&scale_info::Type<PortableForm>, ChainError> {
        self.meta
            .types
            .resolve(id)
            .ok_or_else(|| ChainError::Decode(format!("metadata names unknown type {id}")))
    }

    /// Appends `arg` encoded as type `ty`.
    pub fn encode(&self, ty: u32, arg: &Arg, out: &mut Vec<u8>) -> Result<(), String> {
        if let Arg::Raw(bytes) = arg {
            out.extend_from_slice(bytes);
            return Ok(());
        }
        let t = self.resolve(ty).map_err(|e| e.to_string())?;
        let mismatch = || format!("cannot encode {arg:?} as type {ty} ({:?})", t.path);
        match (&t.type_def, arg) {
            (TypeDef::Composite(c), _) => {
                let fields: Vec<u32> = c.fields.iter().map(|f| f.ty.id).collect();
                self.encode_fields(&fields, arg, out)
                    .map_err(|_| mismatch())
            }
            (TypeDef::Tuple(t), _) => {
                let fields: Vec<u32> = t.fields.iter().map(|f| f.id).collect();
                self.encode_fields(&fields, arg, out)
                    .map_err(|_| mismatch())
            }
            (TypeDef::Primitive(p), Arg::U(v)) => {
                let v = *v;
                let fits = |max: u128| if v <= max { Ok(()) } else { Err(mismatch()) };
                match p {
                    TypeDefPrimitive::Bool => fits(1).map(|_| out.push(v as u8)),
                    TypeDefPrimitive::U8 => fits(u8::MAX as u128).map(|_| out.push(v as u8)),
                    TypeDefPrimitive::U16 => {
                        fits(u16::MAX as u128).map(|_| out.extend((v as u16).to_le_bytes()))
                    }
                    TypeDefPrimitive::U32 => {
                        fits(u32::MAX as u128).map(|_| out.extend((v as u32).to_le_bytes()))
                    }
                    TypeDefPrimitive::U64 => {
                        fits(u64::MAX as u128).map(|_| out.extend((v as u64).to_le_bytes()))
                    }
                    TypeDefPrimitive::U128 => {
                        out.extend(v.to_le_bytes());
                        Ok(())
                    }
                    _ => Err(mismatch()),
                }
            }
            (TypeDef::Compact(_), Arg::U(v)) => {
                Compact(*v).encode_to(out);
                Ok(())
            }
            (TypeDef::Sequence(s), Arg::Seq(items)) => {
                Compact(items.len() as u32).encode_to(out);
                items
                    .iter()
                    .try_for_each(|a| self.encode(s.type_param.id, a, out))
            }
            (TypeDef::Sequence(s), Arg::Bytes(b)) if self.is_u8(s.type_param.id) => {
                b.encode_to(out);
                Ok(())
            }
            (TypeDef::Array(a), Arg::Bytes(b)) if self.is_u8(a.type_param.id) => {
                if b.len() != a.len as usize {
                    return Err(mismatch());
                }
                out.extend_from_slice(b);
                Ok(())
            }
            (TypeDef::Variant(v), Arg::Variant(name)) => {
                let var = v
                    .variants
                    .iter()
                    .find(|x| x.name == *name && x.fields.is_empty())
                    .ok_or_else(mismatch)?;
                out.push(var.index);
                Ok(())
            }
            _ => Err(mismatch()),
        }
    }

    /// A struct or tuple: no fields take `Unit`, one field is a newtype around the value,
    /// several take a `Seq` of the same length.
    fn encode_fields(&self, fields: &[u32], arg: &Arg, out: &mut Vec<u8>) -> Result<(), String> {
        match (fields, arg) {
            ([], Arg::Unit) => Ok(()),
            ([one], _) => self.encode(*one, arg, out),
            (many, Arg::Seq(items)) if many.len() == items.len() && many.len() > 1 => many
                .iter()
                .zip(items)
                .try_for_each(|(ty, a)| self.encode(*ty, a, out)),
            _ => Err(String::new()),
        }
    }

    fn is_u8(&self, ty: u32) -> bool {
        matches!(
            self.resolve(ty).map(|t| &t.type_def),
            Ok(TypeDef::Primitive(TypeDefPrimitive::U8))
        )
    }
}

/// xxHash64 twice (seeds 0 and 1), little-endian: substrate's `twox_128`.
pub fn twox_128(data: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&twox_hash::XxHash64::oneshot(0, data).to_le_bytes());
    out[8..].copy_from_slice(&twox_hash::XxHash64::oneshot(1, data).to_le_bytes());
    out
}

/// BLAKE2b with an `N`-byte digest.
pub fn blake2<const N: usize>(data: &[u8]) -> [u8; N] {
    use blake2::digest::{Update, VariableOutput};
    let mut h = blake2::Blake2bVar::new(N).expect("1..=64 byte digest");
    h.update(data);
    let mut out = [0u8; N];
    h.finalize_variable(&mut out)
        .expect("digest length matches");
    out
}

fn hash_key(hasher: &Hasher, key: &[u8]) -> Vec<u8> {
    match hasher {
        Hasher::Identity => key.to_vec(),
        Hasher::Blake2_128 => blake2::<16>(key).to_vec(),
        Hasher::Blake2_256 => blake2::<32>(key).to_vec(),
        Hasher::Blake2_128Concat => [&blake2::<16>(key)[..], key].concat(),
        Hasher::Twox128 => twox_128(key).to_vec(),
        Hasher::Twox256 => {
            let mut out = twox_128(key).to_vec();
            out.extend(twox_hash::XxHash64::oneshot(2, key).to_le_bytes());
            out.extend(twox_hash::XxHash64::oneshot(3, key).to_le_bytes());
            out
        }
        Hasher::Twox64Concat => {
            [&twox_hash::XxHash64::oneshot(0, key).to_le_bytes()[..], key].concat()
        }
    }
}
