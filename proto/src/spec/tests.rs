use super::*;
use crate::tpp::{performance_density, tpp};

fn model(name: &str) -> &'static AcceleratorSpec {
    by_model(name).unwrap_or_else(|| panic!("{name} is in the table"))
}

#[test]
fn table_has_every_csv_row() {
    assert_eq!(spec_table().len(), 53);
    assert_eq!(CSV_TPP_PD.len(), spec_table().len());
}

#[test]
fn table_values_are_in_range_of_the_checked_constructors() {
    for spec in spec_table() {
        for (_, tops) in spec.dense_tops {
            assert_eq!(
                Tops::from_ten_thousandths(tops.raw()),
                Some(*tops),
                "{}",
                spec.model
            );
        }
        if let Some(area) = spec.die_area {
            assert_eq!(
                DieArea::from_hundredths(area.raw()),
                Some(area),
                "{}",
                spec.model
            );
        }
        for bw in [spec.memory_bandwidth, spec.interconnect_bandwidth]
            .into_iter()
            .flatten()
        {
            assert_eq!(
                Bandwidth::from_thousandths(bw.raw()),
                Some(bw),
                "{}",
                spec.model
            );
        }
    }
}

/// The CSV's `tpp` is the exact product rounded half up to one decimal (Quadro P400:
/// 0.641 x 32 = 20.512 -> 20.5); its `pd` is the exact TPP / area rounded half up to two.
#[test]
fn recomputed_tpp_and_pd_match_the_csv() {
    let mut checked = 0;
    for (spec, (csv_model, csv_tpp, csv_pd)) in spec_table().iter().zip(CSV_TPP_PD) {
        assert_eq!(spec.model, *csv_model);
        let figures = spec.figures();
        let basis = tpp(&figures);
        if csv_tpp.is_empty() {
            assert!(basis.is_none(), "{}: no CSV tpp, so no TPP", spec.model);
            assert!(spec.tensor_rates_unpublished, "{}", spec.model);
            continue;
        }
        let basis = basis.unwrap_or_else(|| panic!("{} has rates", spec.model));
        let exact = basis.tpp.raw();
        // Round half up to tenths: units are ten-thousandths.
        let tenths = (exact + 500) / 1000;
        let csv: Tpp = csv_tpp.parse().unwrap();
        assert_eq!(
            tenths * 1000,
            csv.raw(),
            "{}: TPP {} vs CSV {csv_tpp}",
            spec.model,
            basis.tpp
        );
        match figures
            .die_area
            .and_then(|a| performance_density(basis.tpp, a))
        {
            Some(pd) => {
                let csv: Tpp = csv_pd.parse().unwrap();
                assert_eq!(
                    pd.hundredths(),
                    Some(u128::from(csv.raw() / 100)),
                    "{}",
                    spec.model
                );
            }
            None => assert!(csv_pd.is_empty(), "{}: CSV has pd {csv_pd}", spec.model),
        }
        checked += 1;
    }
    assert_eq!(checked, 50);
}

#[test]
fn csv_tpp_is_the_exact_product_where_it_has_no_rounding() {
    let h100 = model("H100 SXM5 80GB");
    let basis = tpp(&h100.figures()).unwrap();
    assert_eq!(basis.tpp.to_string(), "15831.2");
    assert_eq!(basis.precision, Precision::Fp8);
    assert_eq!(basis.tops.to_string(), "1978.9");
}

#[test]
fn h100_reference_and_equivalents() {
    assert_eq!(h100_reference().model, H100_REFERENCE_MODEL);
    assert_eq!(
        Some(h100_reference_tpp()),
        tpp(&h100_reference().figures()).map(|b| b.tpp)
    );
    let eight = Tpp::from_ten_thousandths(h100_reference_tpp().raw() * 8).unwrap();
    assert_eq!(h100_equivalents(eight).to_string(), "8.00");
    assert!((h100_equivalents(eight).as_f64() - 8.0).abs() < 1e-12);
}

#[test]
fn figures_multiply_die_area_by_dies() {
    let mi250x = model("Instinct MI250X");
    assert_eq!(
        mi250x.figures().die_area.map(|a| a.to_string()),
        Some("1448".into())
    );
    assert_eq!(model("B200 (HGX, per GPU)").figures().die_area, None);
    let fp64 = mi250x.figures().dense_tops[&Precision::Fp64];
    assert_eq!(fp64.to_string(), "95.7", "max of fp64 and fp64_tensor");
}

#[test]
fn lookup_by_pci_id_checks_the_vendor() {
    assert_eq!(
        lookup(Some(0x2330_10DE), None),
        SpecMatch::Found {
            spec: model("H100 SXM5 80GB"),
            by: MatchedBy::PciDeviceId
        }
    );
    assert_eq!(
        lookup(Some(0x74A1_1002), None),
        SpecMatch::Found {
            spec: model("Instinct MI300X"),
            by: MatchedBy::PciDeviceId
        }
    );
    assert_eq!(
        lookup(Some(0x1020_1DA3), None),
        SpecMatch::Found {
            spec: model("Gaudi 2 (HL-225H OAM)"),
            by: MatchedBy::PciDeviceId
        }
    );
    // Right device id, wrong vendor.
    assert_eq!(
        lookup(Some(0x2330_1002), None),
        SpecMatch::Unknown {
            reason: UnknownReason::PciIdNotListed {
                pci_device_id: 0x2330_1002
            }
        }
    );
}

#[test]
fn lookup_by_name_with_or_without_prefix() {
    let found = |name| lookup(None, Some(name));
    assert_eq!(
        found("NVIDIA H100 80GB HBM3"),
        SpecMatch::Found {
            spec: model("H100 SXM5 80GB"),
            by: MatchedBy::NvmlName
        }
    );
    assert_eq!(
        found("GeForce RTX 4090"),
        SpecMatch::Found {
            spec: model("GeForce RTX 4090"),
            by: MatchedBy::NvmlName
        }
    );
    assert_eq!(
        found("NVIDIA GeForce GTX 1070 Ti"),
        SpecMatch::Found {
            spec: model("GeForce GTX 1070 Ti"),
            by: MatchedBy::NvmlName
        }
    );
    // Unknown PCI id falls back to the name.
    assert_eq!(
        lookup(Some(0xFFFF_10DE), Some("NVIDIA H20")),
        SpecMatch::Found {
            spec: model("H20"),
            by: MatchedBy::NvmlName
        }
    );
}

#[test]
fn ambiguous_name_is_unknown_but_pci_id_decides() {
    let SpecMatch::Unknown { reason } = lookup(None, Some("NVIDIA GeForce RTX 3060")) else {
        panic!("RTX 3060 by name is ambiguous");
    };
    assert_eq!(reason.code(), "ambiguous_name");
    assert_eq!(
        reason,
        UnknownReason::AmbiguousName {
            nvml_name: "NVIDIA GeForce RTX 3060".into(),
            candidates: vec![
                "GeForce RTX 3060 12GB (GA106)",
                "GeForce RTX 3060 12GB (GA104)"
            ],
        }
    );
    assert!(matches!(
        lookup(Some(0x2487_10DE), Some("NVIDIA GeForce RTX 3060")),
        SpecMatch::Found { spec, by: MatchedBy::PciDeviceId } if spec.model == "GeForce RTX 3060 12GB (GA104)"
    ));
    assert_eq!(by_model("NVIDIA GeForce RTX 3060"), None);
}

#[test]
fn unknown_reasons() {
    assert_eq!(
        lookup(None, None),
        SpecMatch::Unknown {
            reason: UnknownReason::NoIdentity
        }
    );
    let reason = |id, name| match lookup(id, name) {
        SpecMatch::Unknown { reason } => reason.code(),
        SpecMatch::Found { spec, .. } => panic!("found {}", spec.model),
    };
    assert_eq!(reason(Some(1), None), "pci_id_not_listed");
    assert_eq!(reason(None, Some("Graphics Device")), "name_not_listed");
    assert_eq!(
        reason(Some(1), Some("Graphics Device")),
        "pci_id_and_name_not_listed"
    );
    assert_eq!(reason(None, Some("NVIDIA ")), "name_not_listed");
}

#[test]
fn unknown_reason_codes_are_unique_snake_case_and_match() {
    let mut seen = std::collections::BTreeSet::new();
    for code in UnknownReason::CODES {
        assert!(seen.insert(code), "{code} repeated");
        assert!(
            code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{code}"
        );
    }
    let all = [
        UnknownReason::NoIdentity,
        UnknownReason::PciIdNotListed { pci_device_id: 0 },
        UnknownReason::NameNotListed {
            nvml_name: String::new(),
        },
        UnknownReason::PciIdAndNameNotListed {
            pci_device_id: 0,
            nvml_name: String::new(),
        },
        UnknownReason::AmbiguousName {
            nvml_name: String::new(),
            candidates: vec![],
        },
    ];
    let codes: Vec<_> = all.iter().map(UnknownReason::code).collect();
    assert_eq!(codes, UnknownReason::CODES);
    assert!(all.iter().all(|r| !r.sentence().is_empty()));
}

#[test]
fn spec_match_serializes() {
    let json = serde_json::to_value(lookup(Some(0x2330_10DE), None)).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"status": "found", "model": "H100 SXM5 80GB", "by": "pci_device_id"})
    );
    let json = serde_json::to_value(lookup(None, Some("NVIDIA GeForce RTX 3060"))).unwrap();
    assert_eq!(json["status"], "unknown");
    assert_eq!(json["reason"]["code"], "ambiguous_name");
    assert_eq!(json["reason"]["candidates"].as_array().unwrap().len(), 2);
}

#[test]
fn by_model_is_case_insensitive_and_accepts_nvml_names() {
    assert_eq!(model("h100 sxm5 80gb").model, "H100 SXM5 80GB");
    assert_eq!(model("NVIDIA H100 80GB HBM3").model, "H100 SXM5 80GB");
    assert_eq!(by_model("H100"), None);
}

#[test]
fn tensor_rates_unpublished_leaves_tpp_unknown() {
    let a10g = model("A10G");
    assert!(a10g.tensor_rates_unpublished);
    assert!(!a10g.dense_tops.is_empty(), "the table keeps the FP32 rate");
    assert!(a10g.figures().dense_tops.is_empty());
}
