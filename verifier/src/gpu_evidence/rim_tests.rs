//! The `measurements` check and RIM parsing (fixtures generated here: no XML file in the
//! repository).

use tppguard_proto::gpu_evidence::GpuEvidence;
use tppguard_proto::gpu_evidence::encode::ReportBuilder;
use tppguard_proto::gpu_evidence::opaque::{OpaqueField, OpaqueId};

use super::super::rim::{ReferenceValues, Rim};
use super::super::test_device::{FwidForm, TestDevice};
use super::super::{CheckName, GpuEvidenceReport, Outcome, verify_gpu_evidence};
use super::{AT_2024, DRIVER, VBIOS, assert_check, assert_fails, expected, trust_of};

/// A RIM as NVIDIA writes them.
pub(super) fn rim_xml(version: &str, resources: &[(u32, bool, Vec<Vec<u8>>)]) -> String {
    let mut xml = format!(
        "<SoftwareIdentity xmlns=\"http://standards.iso.org/iso/19770/-2/2015/schema.xsd\" \
         xmlns:ns0=\"http://standards.iso.org/iso/19770/-2/2015/schema.xsd\" \
         xmlns:ns2=\"http://www.w3.org/2001/04/xmlenc#sha384\" name=\"GH100\" version=\"1.0\">\n\
         <ns0:Meta colloquialVersion=\"{version}\" product=\"GH100\"/>\n<ns0:Payload>\n"
    );
    for (index, active, hashes) in resources {
        let mut attrs = String::new();
        for (i, h) in hashes.iter().enumerate() {
            let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
            attrs.push_str(&format!(" ns2:Hash{i}=\"{hex}\""));
        }
        xml.push_str(&format!(
            "<ns0:Resource type=\"Measurement\" index=\"{index}\" active=\"{}\" alternatives=\"{}\"{attrs} size=\"48\"/>\n",
            if *active { "True" } else { "False" },
            hashes.len()
        ));
    }
    xml.push_str("</ns0:Payload>\n</SoftwareIdentity>\n");
    xml
}

/// The block values a hopper-like report carries, by SPDM index.
fn block_value(builder: &ReportBuilder, spdm_index: u8) -> Vec<u8> {
    builder
        .blocks
        .iter()
        .find(|b| b.index == spdm_index)
        .unwrap()
        .value
        .clone()
}

fn rims_for(builder: &ReportBuilder, bad: &[u32]) -> ReferenceValues {
    // Driver RIM: indices 0..=31 active; VBIOS RIM: 32..=63 active (two alternatives each).
    let value = |i: u32| {
        let mut v = block_value(builder, u8::try_from(i + 1).unwrap());
        if bad.contains(&i) {
            v[0] ^= 1;
        }
        v
    };
    let driver: Vec<_> = (0..64).map(|i| (i, i < 32, vec![value(i)])).collect();
    let vbios: Vec<_> = (0..64)
        .map(|i| (i, i >= 32, vec![vec![0xee; 48], value(i)]))
        .collect();
    ReferenceValues::from_rims(vec![
        Rim::parse("driver.xml", &rim_xml(DRIVER, &driver)).unwrap(),
        Rim::parse("1010_0200_882_96009F0001_PROD.xml", &rim_xml(VBIOS, &vbios)).unwrap(),
    ])
}

fn verify_with_rims(
    dev: &TestDevice,
    builder: &ReportBuilder,
    rims: Option<ReferenceValues>,
) -> GpuEvidenceReport {
    let mut trust = trust_of(dev.root_der());
    if let Some(rims) = rims {
        trust = trust.with_reference_values(rims);
    }
    let ev = GpuEvidence::from_parts("HOPPER", dev.chain_pem().as_bytes(), &dev.sign(builder));
    verify_gpu_evidence(&ev, &trust, &expected(builder.request_nonce), AT_2024)
}

#[test]
fn measurements_match_the_rims_of_the_reported_versions() {
    let dev = TestDevice::new("GH100", FwidForm::NvidiaLegacy);
    let builder = dev.report_builder([6; 32], DRIVER, VBIOS);
    let out = verify_with_rims(&dev, &builder, Some(rims_for(&builder, &[])));
    assert_check(&out, CheckName::Measurements, Outcome::Passed, "passed");
    assert!(out.verified());
    let sentence = &out.check(CheckName::Measurements).unwrap().sentence;
    assert!(sentence.contains("not verified"), "{sentence}");

    let out = verify_with_rims(&dev, &builder, Some(rims_for(&builder, &[3, 40])));
    assert_fails(&out, CheckName::Measurements, "measurement_mismatch");
    let sentence = &out.check(CheckName::Measurements).unwrap().sentence;
    assert!(sentence.contains("3, 40"), "{sentence}");

    let out = verify_with_rims(&dev, &builder, None);
    assert_check(
        &out,
        CheckName::Measurements,
        Outcome::NotChecked,
        "no_reference_values",
    );
    // RIMs of other versions only.
    let other = dev.report_builder([6; 32], "560.1.1", VBIOS);
    let out = verify_with_rims(&dev, &other, Some(rims_for(&builder, &[])));
    assert_check(
        &out,
        CheckName::Measurements,
        Outcome::NotChecked,
        "no_rim_for_version",
    );
    // Two RIMs active at one index.
    let conflict = ReferenceValues::from_rims(vec![
        Rim::parse(
            "d.xml",
            &rim_xml(DRIVER, &[(1, true, vec![block_value(&builder, 2)])]),
        )
        .unwrap(),
        Rim::parse(
            "v.xml",
            &rim_xml(VBIOS, &[(1, true, vec![block_value(&builder, 2)])]),
        )
        .unwrap(),
    ]);
    let out = verify_with_rims(&dev, &builder, Some(conflict));
    assert_fails(&out, CheckName::Measurements, "rim_index_conflict");
}

#[test]
fn index_35_is_skipped_only_when_the_report_says_nvdec0_is_disabled() {
    let dev = TestDevice::new("GH100", FwidForm::NvidiaLegacy);
    let mut builder = dev.report_builder([7; 32], DRIVER, VBIOS);
    let rims = || rims_for(&builder.clone(), &[35]);
    // hopper_like says NVDEC0 disabled (0x55), as the real sample does.
    let out = verify_with_rims(&dev, &builder, Some(rims()));
    assert_check(&out, CheckName::Measurements, Outcome::Passed, "passed");
    assert!(
        out.check(CheckName::Measurements)
            .unwrap()
            .sentence
            .contains("index 35 skipped")
    );
    let bad = rims();
    for field in &mut builder.opaque {
        if field.id == OpaqueId::Nvdec0Status.as_u16() {
            field.value = vec![0xAA];
        }
    }
    let out = verify_with_rims(&dev, &builder, Some(bad.clone()));
    assert_fails(&out, CheckName::Measurements, "measurement_mismatch");
    assert!(
        out.check(CheckName::Measurements)
            .unwrap()
            .sentence
            .contains("index(es) 35 ")
    );
    // No NVDEC0 field at all: compared too.
    builder
        .opaque
        .retain(|f: &OpaqueField| f.id != OpaqueId::Nvdec0Status.as_u16());
    let out = verify_with_rims(&dev, &builder, Some(bad));
    assert_fails(&out, CheckName::Measurements, "measurement_mismatch");
}

#[test]
fn hostile_rims_are_refused_with_the_file_named() {
    for (xml, what) in [
        ("not xml", "not XML"),
        (
            "<!DOCTYPE x [<!ENTITY a \"aaaa\">]><SoftwareIdentity/>",
            "not XML",
        ),
        ("<Other/>", "SoftwareIdentity"),
        (
            "<SoftwareIdentity><Payload/></SoftwareIdentity>",
            "colloquialVersion",
        ),
        (
            "<SoftwareIdentity><Meta colloquialVersion=\"1\"/></SoftwareIdentity>",
            "Payload",
        ),
    ] {
        let e = Rim::parse("x\u{1b}.xml", xml).unwrap_err();
        assert_eq!(e.code(), "rim_invalid");
        let text = e.to_string();
        assert!(text.contains(what) && !text.contains('\u{1b}'), "{text}");
    }
    let bad_hash = rim_xml(DRIVER, &[(0, true, vec![vec![1; 48]])])
        .replace("ns2:Hash0=\"01", "ns2:Hash0=\"zz");
    assert!(Rim::parse("h.xml", &bad_hash).is_err());
    let twice = rim_xml(
        DRIVER,
        &[(0, true, vec![vec![1; 48]]), (0, false, vec![vec![1; 48]])],
    );
    assert!(
        Rim::parse("t.xml", &twice)
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
    let many_alternatives = rim_xml(DRIVER, &[(0, true, vec![vec![1; 48]])])
        .replace("alternatives=\"1\"", "alternatives=\"99999999\"");
    assert!(Rim::parse("m.xml", &many_alternatives).is_err());
    // A folder: files read by name, other extensions ignored, an oversized file refused.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.xml"), rim_xml(DRIVER, &[])).unwrap();
    std::fs::write(dir.path().join("b.swidtag"), rim_xml(VBIOS, &[])).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let refs = ReferenceValues::load_dir(dir.path()).unwrap();
    assert_eq!(refs.rims().len(), 2);
    std::fs::write(dir.path().join("c.xml"), vec![b' '; 1024 * 1024 + 1]).unwrap();
    assert_eq!(
        ReferenceValues::load_dir(dir.path()).unwrap_err().code(),
        "rim_too_large"
    );
    assert_eq!(
        ReferenceValues::load_dir(&dir.path().join("missing"))
            .unwrap_err()
            .code(),
        "rim_unreadable"
    );
}

#[test]
fn several_vbios_rims_of_one_version_are_told_apart_by_nvidias_file_prefix() {
    let dev = TestDevice::new("GH100", FwidForm::NvidiaLegacy);
    let builder = dev.report_builder([9; 32], DRIVER, VBIOS);
    let good = rims_for(&builder, &[]);
    let bad = rims_for(&builder, &[40]);
    let driver = good.rims()[0].clone();
    let mut ours = good.rims()[1].clone();
    let mut other = bad.rims()[1].clone();
    // hopper_like: project 1010, project SKU 0200, chip SKU 882.
    ours.file = "1010_0200_882_96009F0001_PROD.swidtag".to_owned();
    other.file = "1010_0205_862_96009F0001_PROD.swidtag".to_owned();
    let rims = ReferenceValues::from_rims(vec![driver.clone(), other.clone(), ours.clone()]);
    let out = verify_with_rims(&dev, &builder, Some(rims));
    assert_check(&out, CheckName::Measurements, Outcome::Passed, "passed");
    // Without a prefix that decides, none is chosen.
    ours.file = "a.xml".to_owned();
    other.file = "b.xml".to_owned();
    let rims = ReferenceValues::from_rims(vec![driver, other, ours]);
    let out = verify_with_rims(&dev, &builder, Some(rims));
    assert_check(
        &out,
        CheckName::Measurements,
        Outcome::NotChecked,
        "no_rim_for_version",
    );
    let sentence = &out.check(CheckName::Measurements).unwrap().sentence;
    assert!(sentence.contains("several for VBIOS"), "{sentence}");
}
