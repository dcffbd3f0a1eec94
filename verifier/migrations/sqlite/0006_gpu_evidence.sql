-- 0006: what the verifier established from each GPU's own signed evidence when it accepted an
-- attestation (per submod: the named checks, the hardware identity, the signed facts), as JSON
-- text; NULL when no GPU of the attestation carried evidence. Written only by the verifier after
-- it checked the evidence, so a replica reads the facts back without verifying again.

ALTER TABLE attestations ADD COLUMN gpu_evidence_json TEXT;
