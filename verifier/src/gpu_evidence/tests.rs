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
