use super::test_device::{FwidForm, TestDevice};

#[test]
fn test_devices_chain_like_nvidia_and_their_keys_load_in_ring() {
    for form in [
        FwidForm::NvidiaLegacy,
        FwidForm::TcgTcbInfo,
        FwidForm::TcgMultiTcbInfo,
    ] {
        let dev = TestDevice::new("GH100", form);
        let chain = dev.chain_der();
        assert_eq!(chain.len(), 4);
        assert_eq!(chain[3], dev.root_der());
        let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        assert!(leaf.subject().to_string().contains("GH100 A01 GSP FMC LF"));
        assert!(leaf.issuer().to_string().contains(dev.ecid()));
        ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            &dev.leaf_key_pkcs8(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let sib = dev.sibling(form);
        assert_ne!(sib.ecid(), dev.ecid());
        assert_eq!(sib.root_der(), dev.root_der());
    }
}

#[test]
fn test_device_reports_parse_and_carry_the_fwid() {
    let dev = TestDevice::new("GH100", FwidForm::NvidiaLegacy);
    let bytes = dev.sign_report([7; 32], "550.90.07", "96.00.9F.00.01");
    let report = tppguard_proto::gpu_evidence::spdm::Report::parse(&bytes).unwrap();
    assert_eq!(report.request().nonce, [7; 32]);
    assert_eq!(report.opaque().fwid(), Some(&dev.fwid()[..]));
    assert_eq!(
        report.opaque().vbios_version().as_deref(),
        Some("96.00.9F.00.01")
    );
    let ev = dev.evidence([7; 32], "550.90.07", "96.00.9F.00.01");
    assert_eq!(ev.arch, "HOPPER");
    assert_eq!(ev.chain_pem().unwrap(), dev.chain_pem().as_bytes());
}
