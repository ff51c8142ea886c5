//! A minimal reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): struct
//! member offsets, enum values and tracepoint argument types. The kernel
//! programs have no CO-RE relocations, so everything that moves between
//! kernels is looked up here at load time.

use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("kernel BTF is malformed: {0}")]
    Malformed(&'static str),
    #[error("kernel BTF has no {0}")]
    Missing(String),
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// One parsed type: header fields and where its trailing records start.
#[derive(Debug, Clone, Copy)]
struct Type {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    /// `size` or `type`, depending on the kind.
    size_or_type: u32,
    extra: usize,
}

/// A type as tracepoint arguments need it: what it resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArgType {
    /// A pointer to a struct (or anything else: `None`).
    Ptr(Option<String>),
    Enum(String),
    Int,
    Other,
}

pub(crate) struct Btf {
    data: Vec<u8>,
    types_start: usize,
    strings_start: usize,
    strings_len: usize,
    /// Index = type id (0 is `void`).
    types: Vec<Type>,
    by_name: HashMap<String, Vec<u32>>,
}

impl Btf {
    pub(crate) fn parse(data: Vec<u8>) -> Result<Self, BtfError> {
        let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let u32_at = |o: usize| {
            data.get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        if u16_at(0) != Some(0xeb9f) {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
        }
        let field = |o| {
            u32_at(o)
                .map(|v| v as usize)
                .ok_or(BtfError::Malformed("short header"))
        };
        let hdr_len = field(4)?;
        let (type_off, type_len, str_off, str_len) =
            (field(8)?, field(12)?, field(16)?, field(20)?);
        let types_start = hdr_len + type_off;
        let strings_start = hdr_len + str_off;
        if types_start + type_len > data.len() || strings_start + str_len > data.len() {
            return Err(BtfError::Malformed("sections past the end"));
        }
        let mut types = vec![Type {
            name_off: 0,
            kind: 0,
            vlen: 0,
            kind_flag: false,
            size_or_type: 0,
            extra: 0,
        }];
        let mut off = types_start;
        while off < types_start + type_len {
            let (Some(name_off), Some(info), Some(size_or_type)) =
                (u32_at(off), u32_at(off + 4), u32_at(off + 8))
            else {
                return Err(BtfError::Malformed("truncated type"));
            };
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let extra = off + 12;
            let trailing = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                0..=19 => 0,
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            types.push(Type {
                name_off,
                kind,
                vlen,
                kind_flag: info >> 31 == 1,
                size_or_type,
                extra,
            });
            off = extra + trailing;
        }
        let mut btf = Btf {
            data,
            types_start,
            strings_start,
            strings_len: str_len,
            types,
            by_name: HashMap::new(),
        };
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
        for (id, t) in btf.types.iter().enumerate().skip(1) {
            if t.name_off != 0 {
                by_name
                    .entry(btf.str_at(t.name_off).to_owned())
                    .or_default()
                    .push(id as u32);
            }
        }
        btf.by_name = by_name;
        let _ = btf.types_start;
        Ok(btf)
    }

    fn u32_at(&self, o: usize) -> u32 {
        self.data
            .get(o..o + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn str_at(&self, off: u32) -> &str {
        let start = self.strings_start + off as usize;
        let end = self.strings_start + self.strings_len;
        let bytes = self.data.get(start..end).unwrap_or_default();
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        std::str::from_utf8(&bytes[..len]).unwrap_or("")
    }

    fn named(&self, name: &str, kind: u32) -> Option<u32> {
        self.by_name
            .get(name)?
            .iter()
            .copied()
            .find(|&id| self.types[id as usize].kind == kind)
    }

    /// Byte offset of `member` in `struct name`, looking inside anonymous
    /// struct and union members.
    pub(crate) fn member_offset(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        let id = self
            .named(name, KIND_STRUCT)
            .ok_or_else(|| BtfError::Missing(format!("struct {name}")))?;
        self.find_member(id, member, 0)
            .ok_or_else(|| BtfError::Missing(format!("member {name}.{member}")))
    }

    fn find_member(&self, id: u32, member: &str, depth: u32) -> Option<u32> {
        let t = self.types.get(id as usize)?;
        if !matches!(t.kind, KIND_STRUCT | KIND_UNION) || depth > 8 {
            return None;
        }
        for i in 0..t.vlen {
            let rec = t.extra + i * 12;
            let (m_name, m_type, m_off) =
                (self.u32_at(rec), self.u32_at(rec + 4), self.u32_at(rec + 8));
            let bits = if t.kind_flag {
                m_off & 0x00ff_ffff
            } else {
                m_off
            };
            if m_name == 0 {
                let inner = self.skip_modifiers(m_type);
                if let Some(off) = self.find_member(inner, member, depth + 1) {
                    return Some(bits / 8 + off);
                }
            } else if self.str_at(m_name) == member {
                return Some(bits / 8);
            }
        }
        None
    }

    fn skip_modifiers(&self, mut id: u32) -> u32 {
        for _ in 0..16 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.size_or_type;
                }
                _ => break,
            }
        }
        id
    }

    /// Every (value, name) of `enum name`.
    /// Whether the kernel has a function of this name (BTF `FUNC`).
    pub(crate) fn has_function(&self, name: &str) -> bool {
        self.named(name, KIND_FUNC).is_some()
    }

    pub(crate) fn enum_values(&self, name: &str) -> Result<Vec<(u64, String)>, BtfError> {
        let (id, kind) = self
            .named(name, KIND_ENUM)
            .map(|id| (id, KIND_ENUM))
            .or_else(|| self.named(name, KIND_ENUM64).map(|id| (id, KIND_ENUM64)))
            .ok_or_else(|| BtfError::Missing(format!("enum {name}")))?;
        let t = self.types[id as usize];
        let width = if kind == KIND_ENUM { 8 } else { 12 };
        Ok((0..t.vlen)
            .map(|i| {
                let rec = t.extra + i * width;
                let lo = u64::from(self.u32_at(rec + 4));
                let hi = if kind == KIND_ENUM64 {
                    u64::from(self.u32_at(rec + 8))
                } else {
                    0
                };
                ((hi << 32) | lo, self.str_at(self.u32_at(rec)).to_owned())
            })
            .collect())
    }

    /// The value of `variant` in `enum name`.
    pub(crate) fn enum_value(&self, name: &str, variant: &str) -> Result<u64, BtfError> {
        self.enum_values(name)?
            .into_iter()
            .find(|(_, n)| n == variant)
            .map(|(v, _)| v)
            .ok_or_else(|| BtfError::Missing(format!("{variant} in enum {name}")))
    }

    /// The argument types of tracepoint `name` as a tp_btf program sees
    /// them (`btf_trace_<name>` without its leading `void *__data`).
    pub(crate) fn tracepoint_args(&self, name: &str) -> Result<Vec<ArgType>, BtfError> {
        let missing = || BtfError::Missing(format!("tracepoint {name}"));
        let typedef = self
            .named(&format!("btf_trace_{name}"), KIND_TYPEDEF)
            .ok_or_else(missing)?;
        let ptr = self.types[typedef as usize].size_or_type;
        let proto = self
            .types
            .get(ptr as usize)
            .ok_or_else(missing)?
            .size_or_type;
        let t = *self.types.get(proto as usize).ok_or_else(missing)?;
        if t.kind != KIND_FUNC_PROTO {
            return Err(missing());
        }
        Ok((1..t.vlen)
            .map(|i| self.arg_type(self.u32_at(t.extra + i * 8 + 4)))
            .collect())
    }

    fn arg_type(&self, id: u32) -> ArgType {
        let id = self.skip_modifiers(id);
        let Some(t) = self.types.get(id as usize) else {
            return ArgType::Other;
        };
        match t.kind {
            KIND_PTR => {
                let to = self.skip_modifiers(t.size_or_type);
                let pointee = self.types.get(to as usize);
                ArgType::Ptr(
                    pointee
                        .filter(|p| p.kind == KIND_STRUCT)
                        .map(|p| self.str_at(p.name_off).to_owned()),
                )
            }
            KIND_ENUM | KIND_ENUM64 => ArgType::Enum(self.str_at(t.name_off).to_owned()),
            KIND_INT => ArgType::Int,
            _ => ArgType::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmlinux() -> Btf {
        Btf::parse(std::fs::read("/sys/kernel/btf/vmlinux").unwrap()).unwrap()
    }

    #[test]
    fn reads_this_kernels_layout() {
        let btf = vmlinux();
        // The start of sock_common is stable ABI the programs rely on.
        assert_eq!(btf.member_offset("sock_common", "skc_daddr").unwrap(), 0);
        assert_eq!(
            btf.member_offset("sock_common", "skc_rcv_saddr").unwrap(),
            4
        );
        assert_eq!(btf.member_offset("sock_common", "skc_dport").unwrap(), 12);
        assert_eq!(btf.member_offset("sock_common", "skc_num").unwrap(), 14);
        assert_eq!(btf.member_offset("sock_common", "skc_family").unwrap(), 16);
        assert!(btf.member_offset("sk_buff", "network_header").unwrap() > 0);
        assert!(matches!(
            btf.member_offset("sock_common", "no_such_member"),
            Err(BtfError::Missing(_))
        ));
    }

    #[test]
    fn reads_enums_and_tracepoint_args() {
        let btf = vmlinux();
        assert_eq!(
            btf.enum_value("skb_drop_reason", "SKB_DROP_REASON_NOT_SPECIFIED")
                .unwrap(),
            2
        );
        assert!(
            btf.enum_value("skb_drop_reason", "SKB_DROP_REASON_TCP_LISTEN_OVERFLOW")
                .unwrap()
                > 2
        );
        let args = btf.tracepoint_args("kfree_skb").unwrap();
        assert_eq!(args[0], ArgType::Ptr(Some("sk_buff".into())));
        assert!(args.contains(&ArgType::Enum("skb_drop_reason".into())));
        assert!(args.contains(&ArgType::Ptr(Some("sock".into()))));
        assert_eq!(
            btf.tracepoint_args("inet_sock_set_state").unwrap(),
            [
                ArgType::Ptr(Some("sock".into())),
                ArgType::Int,
                ArgType::Int
            ]
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(vec![1, 2, 3]).is_err());
        let mut hdr = vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
        hdr.extend_from_slice(&[0, 0, 0, 0, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(Btf::parse(hdr).is_err());
    }
}
