//! Test GPUs, **for tests and benchmarks only**: hidden from the docs, not part of the
//! supported API, never used by the verifier itself.
//!
//! A [`TestRoot`] stands in for NVIDIA's Device Identity CA and issues [`TestDevice`]s whose
//! certificate chains have the shape of a real Hopper GPU's (see `docs/gpu-evidence.md`):
//!
//! ```text
//! tppguard TEST Device Identity CA              self-signed, CA, P-384
//!  -> NVIDIA <chip> Provisioner ICA 1 (TEST)    CA
//!   -> <chip> A01 GSP BROM                      CA, subject serialNumber = the device's ECID
//!    -> <chip> A01 GSP FMC LF                   not a CA, keyUsage digitalSignature (critical),
//!                                               issuer serialNumber = the ECID, and the
//!                                               FWID extension in the chosen form
//! ```
//!
//! Keys are fresh random P-384 keys: the chains differ from run to run, the assertions do not.
//! Two devices of one root ([`TestDevice::sibling`]) share the root and the intermediate,
//! which is what "a chain from another device" needs.

#![expect(
    clippy::expect_used,
    reason = "test support: key generation and signing with fixed, valid inputs cannot fail, so \
              a failure here is a bug in this module"
)]

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P384_SHA384, PublicKeyData,
};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
use tppguard_proto::gpu_evidence::GpuEvidence;
use tppguard_proto::gpu_evidence::encode::{ReportBuilder, sign_p384};

/// OID arcs of the TCG DICE TcbInfo extension (2.23.133.5.4.1), which Hopper leaves carry in
/// NVIDIA's legacy form.
pub const TCB_INFO_ARCS: &[u64] = &[2, 23, 133, 5, 4, 1];
/// OID arcs of the TCG DICE MultiTcbInfo extension (2.23.133.5.4.5).
pub const MULTI_TCB_INFO_ARCS: &[u64] = &[2, 23, 133, 5, 4, 5];
/// DER of the OID id-sha384 (2.16.840.1.101.3.4.2.2), tag and length included.
pub const SHA384_OID_DER: &[u8] = &[
    0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
];

/// The form of the FWID extension a test leaf carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FwidForm {
    /// Hopper's: extension 2.23.133.5.4.1 holding `SEQUENCE { INTEGER 1,
    /// SubjectPublicKeyInfo (the BROM key), SEQUENCE { id-sha384, OCTET STRING fwid } }`.
    NvidiaLegacy,
    /// The TCG DICE TcbInfo at 2.23.133.5.4.1: vendor, model, layer and `fwids [6]`.
    TcgTcbInfo,
    /// The TCG DICE MultiTcbInfo at 2.23.133.5.4.5: two TcbInfos, the first for an earlier
    /// layer (another digest), the second carrying the firmware's FWID.
    TcgMultiTcbInfo,
}

/// Departures from NVIDIA's leaf shape, for hostile tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quirks {
    /// Mark the FWID extension critical.
    pub critical_fwid: bool,
    /// Give the leaf a P-256 key (its reports cannot then be signed: [`TestDevice::sign`]
    /// needs P-384).
    pub leaf_p256: bool,
}

/// The validity the certificates of a [`TestRoot`] get: from 1 January of `from_year` to 31
/// December of `until_year`, both UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First year of validity.
    pub from_year: i32,
    /// Last year of validity.
    pub until_year: i32,
}

impl Default for Validity {
    /// 2023 to 2099: every instant the tests use.
    fn default() -> Self {
        Self {
            from_year: 2023,
            until_year: 2099,
        }
    }
}

/// A test device-identity root and its provisioner intermediate for one chip.
pub struct TestRoot {
    chip: String,
    validity: Validity,
    root_pem: String,
    ica_pem: String,
    ica: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRoot")
            .field("chip", &self.chip)
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

fn p384_key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("P-384 key generation")
}

fn dn(parts: &[(DnType, &str)]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    for (ty, value) in parts {
        name.push(ty.clone(), DnValue::Utf8String((*value).to_owned()));
    }
    name
}

/// The X.520 serialNumber attribute type (2.5.4.5), which NVIDIA's device certificates carry.
fn serial_number_attr() -> DnType {
    DnType::CustomDnType(vec![2, 5, 4, 5])
}

fn ca_params(name: DistinguishedName, validity: Validity) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = name;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = rcgen::date_time_ymd(validity.from_year, 1, 1);
    p.not_after = rcgen::date_time_ymd(validity.until_year, 12, 31);
    p.use_authority_key_identifier_extension = true;
    p
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .expect("system randomness");
    out
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

impl TestRoot {
    /// A root and a provisioner intermediate for `chip` (`GH100`), valid 2023 to 2099.
    pub fn new(chip: &str) -> Arc<Self> {
        Self::with_validity(chip, Validity::default())
    }

    /// A root and intermediate whose certificates, and those of the devices they issue, are
    /// valid over `validity`.
    pub fn with_validity(chip: &str, validity: Validity) -> Arc<Self> {
        Self::build(
            chip,
            validity,
            "tppguard TEST Device Identity CA",
            "tppguard TEST",
        )
    }

    /// A root with the very name of NVIDIA's Device Identity CA (`CN=NVIDIA Device Identity
    /// CA, O=NVIDIA`) but a key of its own: what an impostor GPU would send.
    pub fn impersonating_nvidia(chip: &str) -> Arc<Self> {
        Self::build(
            chip,
            Validity::default(),
            "NVIDIA Device Identity CA",
            "NVIDIA",
        )
    }

    fn build(chip: &str, validity: Validity, root_cn: &str, root_o: &str) -> Arc<Self> {
        let root_key = p384_key();
        let root_params = ca_params(
            dn(&[
                (DnType::CommonName, root_cn),
                (DnType::OrganizationName, root_o),
            ]),
            validity,
        );
        let root_pem = root_params.self_signed(&root_key).expect("root").pem();
        let root = Issuer::new(root_params, root_key);
        let ica_key = p384_key();
        let ica_params = ca_params(
            dn(&[
                (
                    DnType::CommonName,
                    &format!("NVIDIA {chip} Provisioner ICA 1 (TEST)"),
                ),
                (DnType::OrganizationName, "tppguard TEST"),
            ]),
            validity,
        );
        let ica_pem = ica_params
            .signed_by(&ica_key, &root)
            .expect("intermediate")
            .pem();
        Arc::new(Self {
            chip: chip.to_owned(),
            validity,
            root_pem,
            ica_pem,
            ica: Issuer::new(ica_params, ica_key),
        })
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> String {
        self.root_pem.clone()
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> Vec<u8> {
        pem_to_der(&self.root_pem)
    }

    /// A new device under this root, its leaf carrying the FWID in `form`.
    pub fn device(self: &Arc<Self>, form: FwidForm) -> TestDevice {
        TestDevice::issue(Arc::clone(self), form, Quirks::default())
    }

    /// A new device whose leaf departs from NVIDIA's shape as `quirks` says (hostile tests).
    pub fn device_with(self: &Arc<Self>, form: FwidForm, quirks: Quirks) -> TestDevice {
        TestDevice::issue(Arc::clone(self), form, quirks)
    }
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("PEM written by rcgen")
        .to_vec()
}

/// One test GPU: its device certificate ("GSP BROM"), its attestation leaf ("GSP FMC LF") and
/// the leaf's key, which signs its reports.
#[derive(Debug)]
pub struct TestDevice {
    root: Arc<TestRoot>,
    form: FwidForm,
    ecid: String,
    fwid: [u8; 48],
    brom_pem: String,
    brom_spki: Vec<u8>,
    leaf_pem: String,
    leaf_pkcs8: Vec<u8>,
}

impl TestDevice {
    /// A device under a fresh root of its own (see [`TestRoot::new`]).
    pub fn new(chip: &str, form: FwidForm) -> Self {
        TestRoot::new(chip).device(form)
    }

    /// Another device under the same root and intermediate.
    pub fn sibling(&self, form: FwidForm) -> Self {
        self.root.device(form)
    }

    fn issue(root: Arc<TestRoot>, form: FwidForm, quirks: Quirks) -> Self {
        let chip = root.chip.clone();
        let ecid = upper_hex(&random::<9>());
        let brom_key = p384_key();
        let brom_name = dn(&[
            (serial_number_attr(), &ecid),
            (DnType::CountryName, "US"),
            (DnType::OrganizationName, "NVIDIA Corporation"),
            (DnType::CommonName, &format!("{chip} A01 GSP BROM")),
        ]);
        let brom_params = ca_params(brom_name, root.validity);
        let brom_pem = brom_params
            .signed_by(&brom_key, &root.ica)
            .expect("BROM certificate")
            .pem();
        let brom_spki = brom_key.subject_public_key_info();
        let brom = Issuer::new(brom_params, brom_key);

        let fwid = random::<48>();
        let leaf_key = if quirks.leaf_p256 {
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key generation")
        } else {
            p384_key()
        };
        let leaf_pkcs8 = leaf_key.serialize_der();
        let mut leaf = CertificateParams::default();
        leaf.distinguished_name = dn(&[
            (
                serial_number_attr(),
                &upper_hex(&leaf.key_identifier(&leaf_key)),
            ),
            (DnType::CountryName, "US"),
            (DnType::OrganizationName, "NVIDIA Corporation"),
            (DnType::CommonName, &format!("{chip} A01 GSP FMC LF")),
        ]);
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.not_before = rcgen::date_time_ymd(root.validity.from_year, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(root.validity.until_year, 12, 31);
        leaf.use_authority_key_identifier_extension = true;
        let mut extension = fwid_extension(form, &chip, &brom_spki, &fwid);
        extension.set_criticality(quirks.critical_fwid);
        leaf.custom_extensions = vec![extension];
        let leaf_pem = leaf
            .signed_by(&leaf_key, &brom)
            .expect("leaf certificate")
            .pem();
        Self {
            root,
            form,
            ecid,
            fwid,
            brom_pem,
            brom_spki,
            leaf_pem,
            leaf_pkcs8,
        }
    }

    /// The root this device chains to, PEM.
    pub fn root_pem(&self) -> String {
        self.root.root_pem()
    }

    /// The root this device chains to, DER.
    pub fn root_der(&self) -> Vec<u8> {
        self.root.root_der()
    }

    /// The chain as NVML returns it: leaf, BROM, intermediate, root (PEM, concatenated).
    pub fn chain_pem(&self) -> String {
        [
            self.leaf_pem.as_str(),
            &self.brom_pem,
            &self.root.ica_pem,
            &self.root.root_pem,
        ]
        .concat()
    }

    /// The chain as DER certificates, leaf first, root last.
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        [
            &self.leaf_pem,
            &self.brom_pem,
            &self.root.ica_pem,
            &self.root.root_pem,
        ]
        .iter()
        .map(|pem| pem_to_der(pem))
        .collect()
    }

    /// The leaf's private key: PKCS#8 that ring loads for `ECDSA_P384_SHA384_FIXED_SIGNING`.
    pub fn leaf_key_pkcs8(&self) -> Vec<u8> {
        self.leaf_pkcs8.clone()
    }

    /// The firmware id the leaf certifies and the device's reports carry (opaque id 20).
    pub fn fwid(&self) -> [u8; 48] {
        self.fwid
    }

    /// The device's ECID: the BROM certificate's subject serialNumber (upper-case hex).
    pub fn ecid(&self) -> &str {
        &self.ecid
    }

    /// The BROM certificate's SubjectPublicKeyInfo, DER (its SHA-256 is the hardware id).
    pub fn brom_spki_der(&self) -> &[u8] {
        &self.brom_spki
    }

    /// The FWID form of the leaf.
    pub fn form(&self) -> FwidForm {
        self.form
    }

    /// A report shaped like the real H100 sample ([`ReportBuilder::hopper_like`]) with this
    /// device's FWID, answering `nonce`, for the `driver` and `vbios` versions: set fields
    /// of it and sign it with [`Self::sign`].
    pub fn report_builder(&self, nonce: [u8; 32], driver: &str, vbios: &str) -> ReportBuilder {
        let mut builder = ReportBuilder::hopper_like(driver, vbios, &self.fwid);
        builder.request_nonce = nonce;
        builder.responder_nonce = random::<32>();
        builder
    }

    /// `builder`'s report signed with the leaf key: request || response || signature.
    pub fn sign(&self, builder: &ReportBuilder) -> Vec<u8> {
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &self.leaf_pkcs8, &rng)
                .expect("the leaf key rcgen generated");
        sign_p384(&builder.unsigned_bytes(), &key, &rng).expect("P-384 signing")
    }

    /// A signed report answering `nonce`, for the `driver` and `vbios` versions.
    pub fn sign_report(&self, nonce: [u8; 32], driver: &str, vbios: &str) -> Vec<u8> {
        self.sign(&self.report_builder(nonce, driver, vbios))
    }

    /// The evidence item NVIDIA's tools exchange: arch `HOPPER`, this device's chain and a
    /// signed report answering `nonce`.
    pub fn evidence(&self, nonce: [u8; 32], driver: &str, vbios: &str) -> GpuEvidence {
        GpuEvidence::from_parts(
            "HOPPER",
            self.chain_pem().as_bytes(),
            &self.sign_report(nonce, driver, vbios),
        )
    }
}

/// DER tag-length-value with a definite length (short or long form).
pub fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.extend(u8::try_from(len).ok());
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.extend(u8::try_from(significant.len()).ok().map(|n| 0x80 | n));
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// `FWID ::= SEQUENCE { hashAlg OBJECT IDENTIFIER (id-sha384), digest OCTET STRING }`.
fn fwid_der(digest: &[u8]) -> Vec<u8> {
    der_tlv(0x30, &[SHA384_OID_DER, &der_tlv(0x04, digest)].concat())
}

/// A TCG DICE TcbInfo with vendor, model, layer and one SHA-384 FWID.
fn tcb_info(model: &str, layer: u8, digest: &[u8]) -> Vec<u8> {
    der_tlv(
        0x30,
        &[
            der_tlv(0x80, b"NVIDIA"),
            der_tlv(0x81, model.as_bytes()),
            der_tlv(0x84, &[layer]),
            der_tlv(0xa6, &fwid_der(digest)),
        ]
        .concat(),
    )
}

/// The leaf's FWID extension in `form` (non-critical, as on NVIDIA's leaves).
fn fwid_extension(form: FwidForm, chip: &str, brom_spki: &[u8], fwid: &[u8]) -> CustomExtension {
    match form {
        FwidForm::NvidiaLegacy => CustomExtension::from_oid_content(
            TCB_INFO_ARCS,
            der_tlv(
                0x30,
                &[&der_tlv(0x02, &[1])[..], brom_spki, &fwid_der(fwid)].concat(),
            ),
        ),
        FwidForm::TcgTcbInfo => {
            CustomExtension::from_oid_content(TCB_INFO_ARCS, tcb_info(chip, 1, fwid))
        }
        FwidForm::TcgMultiTcbInfo => CustomExtension::from_oid_content(
            MULTI_TCB_INFO_ARCS,
            der_tlv(
                0x30,
                &[tcb_info(chip, 0, &random::<48>()), tcb_info(chip, 1, fwid)].concat(),
            ),
        ),
    }
}
