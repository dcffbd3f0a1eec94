use super::*;

#[test]
fn parses_exact_decimals() {
    assert_eq!("1978.9".parse::<Tops>().unwrap().raw(), 19_789_000);
    assert_eq!("0.0947".parse::<Tops>().unwrap().raw(), 947);
    assert_eq!("4800".parse::<Tpp>().unwrap().raw(), 48_000_000);
    assert_eq!("608.5".parse::<DieArea>().unwrap().raw(), 60_850);
    assert_eq!("32.06".parse::<Bandwidth>().unwrap().raw(), 32_060);
    // Trailing zeros beyond the unit's decimals are exact, so accepted.
    assert_eq!("5.920000".parse::<Tpp>().unwrap().raw(), 59_200);
}

#[test]
fn rejects_inexact_negative_and_garbage() {
    assert_eq!(
        "0.00001".parse::<Tops>(),
        Err(DecimalError::TooManyDecimals {
            text: "0.00001".into(),
            max_decimals: 4
        })
    );
    assert_eq!(
        "608.555".parse::<DieArea>().unwrap_err().to_string(),
        "\"608.555\" has more than 2 decimal places, more than this figure holds exactly"
    );
    assert_eq!("-1".parse::<Tpp>(), Err(DecimalError::Negative));
    assert_eq!("".parse::<Tpp>(), Err(DecimalError::Empty));
    for bad in [
        "1e3", "+1", ".5", "5.", "1,000", " 1", "abc", "1.2.3", "NaN",
    ] {
        assert!(
            matches!(bad.parse::<Tpp>(), Err(DecimalError::NotADecimal { .. })),
            "{bad}"
        );
    }
    assert!(matches!(
        "99999999999999999999999".parse::<Tpp>(),
        Err(DecimalError::TooLarge { .. })
    ));
    assert!(matches!(
        "100000001".parse::<Tops>(),
        Err(DecimalError::TooLarge { .. })
    ));
    assert_eq!(
        "0".parse::<DieArea>(),
        Err(DecimalError::TooSmall {
            text: "0".into(),
            min: "0.01".into()
        })
    );
    assert_eq!(DieArea::from_hundredths(0), None);
}

#[test]
fn displays_shortest_exact_decimal() {
    for text in ["15831.2", "4800", "0.641", "0.0947", "0", "4706.88"] {
        assert_eq!(text.parse::<Tpp>().unwrap().to_string(), text);
    }
    assert_eq!("4800.000".parse::<Tpp>().unwrap().to_string(), "4800");
    assert_eq!("608.50".parse::<DieArea>().unwrap().to_string(), "608.5");
    assert_eq!("1.5".parse::<Bandwidth>().unwrap().to_string(), "1.5");
}

#[test]
fn tops_times_bits_is_exact() {
    let fp8: Tops = "1978.9".parse().unwrap();
    assert_eq!(fp8.tpp_at(8).to_string(), "15831.2");
    let max = Tops::from_ten_thousandths(Tops::MAX_RAW).unwrap();
    assert!(
        max.tpp_at(64).raw() <= Tpp::MAX_RAW,
        "TPP of the largest rate fits"
    );
}

#[test]
fn density_compares_exactly_by_cross_multiplication() {
    let threshold: PerformanceDensity = "5.92".parse().unwrap();
    let area: DieArea = "100".parse().unwrap();
    let at = PerformanceDensity::new("592".parse().unwrap(), area).unwrap();
    let below = PerformanceDensity::new("591.9999".parse().unwrap(), area).unwrap();
    assert_eq!(at, threshold);
    assert!(below < threshold);
    // 1/3 is not a finite decimal; 1/3 < 0.3334 and > 0.3333.
    let third = PerformanceDensity::new("1".parse().unwrap(), "3".parse().unwrap()).unwrap();
    assert!(third > "0.3333".parse().unwrap());
    assert!(third < "0.3334".parse().unwrap());
}

#[test]
fn density_displays_rounded_half_up() {
    let pd = |tpp: &str, area: &str| {
        PerformanceDensity::new(tpp.parse().unwrap(), area.parse().unwrap())
            .unwrap()
            .to_string()
    };
    assert_eq!(pd("15831.2", "814"), "19.45");
    assert_eq!(pd("1.005", "1.01"), "1.00"); // 0.99504.. -> 1.00
    assert_eq!(pd("1.125", "1"), "1.13"); // half up
    assert_eq!(pd("96.992", "200"), "0.48"); // 0.48496
    assert_eq!(pd("2.2", "1"), "2.20");
    let threshold: PerformanceDensity = "5.925".parse().unwrap();
    assert_eq!(threshold.to_string(), "5.93");
    assert_eq!(threshold.threshold_text(), "5.925");
}

#[test]
fn h100_equivalents_display() {
    let h = |tpp: &str, reference: &str| {
        H100Equivalents::new(tpp.parse().unwrap(), reference.parse().unwrap())
    };
    assert_eq!(h("15831.2", "15831.2").to_string(), "1.00");
    assert_eq!(h("2368", "15831.2").to_string(), "0.15");
    assert!((h("4992", "15831.2").as_f64() - 0.31533).abs() < 1e-4);
}

#[test]
fn serializes_as_json_numbers() {
    let tpp: Tpp = "15831.2".parse().unwrap();
    assert_eq!(serde_json::to_string(&tpp).unwrap(), "15831.2");
    let bw: Bandwidth = "32.06".parse().unwrap();
    assert_eq!(serde_json::to_string(&bw).unwrap(), "32.06");
}

#[test]
fn tpp_sum_saturates() {
    let a: Tpp = "15831.2".parse().unwrap();
    assert_eq!(Tpp::sum([a, a]).to_string(), "31662.4");
    assert_eq!(Tpp::sum([]), Tpp::default());
    let max = Tpp::from_ten_thousandths(Tpp::MAX_RAW).unwrap();
    assert_eq!(Tpp::sum([max, a]), max);
}

#[test]
fn measured_rates_are_truncated_exactly() {
    let tops = |s: &str| s.parse::<Tops>().unwrap();
    assert_eq!(Tops::from_measured(1320.4), Some(tops("1320.4")));
    assert_eq!(Tops::from_measured(1_320.456_78), Some(tops("1320.4567")));
    assert_eq!(Tops::from_measured(0.123_456), Some(tops("0.1234")));
    assert_eq!(Tops::from_measured(0.0), Some(Tops::default()));
    assert_eq!(Tops::from_measured(-0.0), Some(Tops::default()));
    assert_eq!(Tops::from_measured(1e6), Some(tops("1000000")));
    assert_eq!(Tops::from_measured(f64::NAN), None);
    assert_eq!(Tops::from_measured(f64::INFINITY), None);
    assert_eq!(Tops::from_measured(-1.0), None);
    assert_eq!(Tops::from_measured(1e30), None, "beyond Tops::MAX_RAW");
}
