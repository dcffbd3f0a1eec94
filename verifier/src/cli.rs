//! The command line of `tppguard-verifier` (clap derive): doc comments here are the `--help`
//! text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tppguard_proto::claims::Nonce;
use tppguard_proto::tpp::Precision;
use tppguard_proto::units::{Bandwidth, DieArea, Tops};

/// Exit codes, shown at the end of `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  findings: the command ran and reports a problem (`licence show`: the licence verifies
     but is not in force at --at, expired or not yet valid; `check`: not compliant under a
     rule set, or a licence or attestation rejected)
  2  usage or input error (bad flag or value, unknown model, unreadable or invalid rule set,
     a rejected certificate chain, signed licence or signed shipment, files that would be
     overwritten)
  3  `check`: unproven: no violation seen, but the evidence cannot establish compliance
     (simulated or stale evidence, uncertified sites, unidentified or unlisted GPUs, an
     evidence tier below the licence's)";

/// tppguard verifier: classifies accelerators under export-control rule sets and checks
/// tppguard evidence.
#[derive(Debug, Parser)]
#[command(name = "tppguard-verifier", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Classify one accelerator (TPP, performance density, H100-equivalents) under rule sets.
    ///
    /// Figures come from the spec table (--model) or from flags (--tops and the others).
    /// Each rule set's outcome is shown with its legal status (in force, bill, policy,
    /// historical), the clause that decided it and the figures compared. A figure a clause
    /// needs but that is unknown (no die area, no bandwidth) gives `indeterminate`, never a
    /// guess.
    #[command(after_help = EXIT_CODES)]
    Classify(ClassifyArgs),

    /// A small built-in PKI to try tppguard, and a certificate-chain checker.
    ///
    /// Operators with their own PKI (step-ca, Vault, an enterprise CA) need only
    /// `pki verify-chain`: any standard chain works for node keys, as long as the leaf has
    /// digitalSignature key usage and, if it has an EKU extension, clientAuth.
    #[command(after_help = EXIT_CODES)]
    Pki(PkiArgs),

    /// Sign an authored licence (TOML) as the licence authority, or verify and show a signed
    /// one.
    #[command(after_help = EXIT_CODES)]
    Licence(LicenceArgs),

    /// Sign a shipment record (TOML) as the GPU vendor, or verify and show a signed one.
    #[command(after_help = EXIT_CODES)]
    Shipment(ShipmentArgs),

    /// Check a fleet's compliance: verify licences and attestations, then evaluate them under
    /// one or more rule sets side by side.
    ///
    /// Every licence (--licence) and attestation file is verified against trust.toml at --at;
    /// a rejected one is reported with its reason code and makes the verdict not compliant,
    /// but the run goes on. The accepted evidence is evaluated under each rule set (--rule-set,
    /// repeated for scenarios such as "what if the GAIN AI bill passed"; default: the rule sets
    /// the licences name). For each rule set: its legal status, usage per licence (devices and
    /// TPP against the caps, with headroom and H100-equivalents), per country, the findings
    /// with their codes, and COMPLIANT, UNPROVEN or NOT COMPLIANT. With --ear, the result is also written
    /// as an EAR (draft-ietf-rats-ear) JWT signed with the verifier's result key: one submod
    /// per node, its status from the first rule set's verdict.
    ///
    /// Example:
    ///
    ///   tppguard-verifier check --trust pki/verifier/trust.toml --licence l.jws \
    ///     --rule-set us-eccn-3a090 --rule-set us-gain-ai-act-s3150 \
    ///     --nonce "$NONCE" --ear result.jwt node-01.jws node-02.jws
    ///
    /// What if France moved to Tier 2 (one command; --scenario below shows every form):
    ///
    ///   tppguard-verifier check --trust pki/verifier/trust.toml --licence l.jws \
    ///     --rule-set us-ai-diffusion-2025 --scenario FR=tier_2 node-01.jws node-02.jws
    ///
    /// Exit code 0: compliant under every rule set evaluated, every input accepted; 1: not
    /// compliant (a violation, or a rejected licence or attestation); 3: unproven (no
    /// violation, but the evidence cannot establish compliance: simulated or stale evidence,
    /// an uncertified site, unidentified or unlisted GPUs, a tier below the licence's); 2: the
    /// check could not run (an unreadable file or trust file, an unknown rule set, no result
    /// key for --ear, a --scenario change that cannot be applied). A --scenario never changes
    /// the exit code: it is the baseline's.
    #[command(after_help = EXIT_CODES, verbatim_doc_comment)]
    Check(CheckArgs),

    /// Run the verifier as an HTTP service: nodes fetch a challenge, post attestations and
    /// get an EAR back; operators read the fleet, licences, findings and metrics.
    ///
    /// Everything is set in one TOML file (example: deploy/verifier.toml; reference:
    /// docs/serve.md). Relative paths in it are read from its folder. Keys:
    ///
    ///   trust = "pki/verifier/trust.toml"  # required: from `pki init-verifier`
    ///   listen = "127.0.0.1:8080"      # default; plain HTTP unless tls_cert and tls_key
    ///   database = "sqlite://..."      # default: tppguard-verifier.db beside the file;
    ///                                  # postgres://... for several replicas
    ///   licences_dir = "licences"      # signed licences (*.jws), verified and imported
    ///   rule_sets = ["us-eccn-3a090"]  # default: the rule sets the licences name
    ///   result_key = "..."             # default: verifier-result.key beside trust.toml
    ///   nonce_ttl_s = 300              # how long a challenge may be answered
    ///   max_body_bytes = 1048576       # larger requests get 413
    ///   request_timeout_s = 30         # slower requests get 408
    ///   node_rate_per_minute = 30      # more attestations per node get 429
    ///   admin_token_file = "admin.token"  # a static admin token (or `token issue --role admin`)
    ///   client_auth = "optional"       # HTTPS: nodes may present node-chain.pem instead
    ///   tls_cert = "verifier-tls.pem"  # HTTPS: PEM chain, leaf first (with tls_key)
    ///   tls_key = "verifier-tls.key"   # its PEM private key; agents trust the CA with --ca
    ///
    /// Every route but /healthz and /readyz needs a credential (`token issue`). The node's
    /// side:
    ///
    ///   tppguard-verifier token issue --config verifier.toml --role node --name n1 --out n1.token
    ///   AUTH="Authorization: Bearer $(cat n1.token)"
    ///   NONCE=$(curl -s -H "$AUTH" -X POST http://127.0.0.1:8080/v1/challenge | jq -r .nonce)
    ///   tppguard-agent attest --dir NODE --nonce "$NONCE" --out a.jws
    ///   curl -s -H "$AUTH" -H 'Content-Type: application/jose' --data-binary @a.jws \
    ///     http://127.0.0.1:8080/v1/attestations
    ///
    /// Prints `listening on http://ADDR` (https:// with TLS) once bound (port 0 picks a free
    /// one) and stops cleanly on SIGTERM or ctrl-c. The API is described in docs/openapi.json.
    #[command(after_help = EXIT_CODES, verbatim_doc_comment)]
    Serve(ServeArgs),

    /// Issue, list and revoke the bearer tokens the `serve` API takes.
    ///
    /// Every route but /healthz and /readyz needs a credential. A token's role decides its
    /// routes (docs/serve.md, Roles and credentials):
    ///
    ///   node       POST /v1/challenge, POST /v1/attestations
    ///   operator   every GET read, and /metrics
    ///   regulator  every GET read (what it sees: the read views' configuration)
    ///   vendor     every GET read, about its --licence ids only
    ///   admin      POST /v1/licences, and /metrics
    ///   metrics    GET /metrics only
    ///
    /// Tokens live in the verifier's database; the one --config names. A running verifier
    /// notices a new or revoked token within a second. Example, a regulator's read access:
    ///
    ///   TOKEN=$(tppguard-verifier token issue --config verifier.toml \
    ///     --role regulator --name bafa --expires-in-days 90)
    ///   curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/v1/fleet
    ///   tppguard-verifier token list --config verifier.toml
    ///   tppguard-verifier token revoke --config verifier.toml ID
    #[command(after_help = EXIT_CODES, verbatim_doc_comment)]
    Token(TokenArgs),

    /// Verify one GPU's own signed evidence (NVIDIA SPDM measurement report and device
    /// certificate chain), or print the nonce a GPU is given.
    ///
    /// `gpu-evidence verify` runs the checks an attestation's GPU evidence gets, on the
    /// files NVIDIA's tools write (docs/gpu-evidence.md); `gpu-evidence nonce` reproduces the
    /// nonce that binds a GPU's report to a challenge, a node key and a GPU index.
    ///
    /// Exit code 0: verified; 1: a check failed; 2: could not run.
    #[command(after_help = EXIT_CODES)]
    GpuEvidence(crate::gpu_evidence::cli::GpuEvidenceArgs),
}

// Bearer tokens (issue 12): `token issue|list|revoke`.

/// Flags of `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token and print it, once: `tpg_<id>_<secret>` (the database keeps only the
    /// SHA-256 of the secret; a lost token cannot be shown again, issue a new one).
    ///
    /// Prints the token alone on stdout (for `TOKEN=$(...)`), or writes it to --out (a new
    /// file, mode 0600) and prints its id.
    #[command(after_help = EXIT_CODES)]
    Issue(TokenIssueArgs),

    /// List the tokens: id, role, licences, created, expires, revoked and name (never a
    /// secret).
    #[command(after_help = EXIT_CODES)]
    List {
        /// The verifier's configuration file (its `database` holds the tokens).
        #[arg(long, value_name = "VERIFIER.toml")]
        config: PathBuf,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },

    /// Revoke a token by its id (`token list`); a running verifier refuses it within a
    /// second. Revoked tokens stay listed.
    #[command(after_help = EXIT_CODES)]
    Revoke {
        /// The verifier's configuration file (its `database` holds the tokens).
        #[arg(long, value_name = "VERIFIER.toml")]
        config: PathBuf,
        /// The token's id: the 16 hex digits after `tpg_`.
        #[arg(value_name = "ID")]
        id: String,
        /// Print the revoked token as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Flags of `token issue`.
#[derive(Debug, Args)]
pub struct TokenIssueArgs {
    /// The verifier's configuration file (its `database` holds the tokens).
    #[arg(long, value_name = "VERIFIER.toml")]
    pub config: PathBuf,

    /// What the token may do: node, operator, regulator, vendor, admin or metrics.
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    pub role: crate::serve::auth::Role,

    /// Whom it is for (shown by `token list` and in the logs), e.g. bafa-export-control.
    #[arg(long, value_name = "NAME")]
    pub name: String,

    /// For --role vendor (required, repeat for several): a licence id the token may read
    /// about. Other roles take none.
    #[arg(long, value_name = "ID")]
    pub licence: Vec<String>,

    /// Days until the token stops being accepted (1 to 3650; default: never).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub expires_in_days: Option<u32>,

    /// Write the token to this new file (mode 0600) instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Print one JSON object (with the token, unless --out).
    #[arg(long)]
    pub json: bool,
}

fn parse_role(text: &str) -> Result<crate::serve::auth::Role, String> {
    crate::serve::auth::Role::parse(text).ok_or_else(|| {
        format!("{text:?} is not a role: node, operator, regulator, vendor, admin or metrics")
    })
}

// End of bearer tokens.

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file (TOML; see above).
    #[arg(long, value_name = "VERIFIER.toml")]
    pub config: PathBuf,
}

/// Flags of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The trust file (written by `pki init-verifier`): operator roots for attestations,
    /// licence-authority roots for licences.
    #[arg(long, value_name = "TRUST.toml")]
    pub trust: PathBuf,

    /// A signed licence (compact JWS, from `licence sign`); repeat for several.
    #[arg(long, value_name = "L.jws", required = true)]
    pub licence: Vec<PathBuf>,

    /// A signed shipment record (compact JWS, from `shipment sign`), verified under the trust
    /// file's `[vendor]` roots; repeat for several. Its devices are followed in the fleet:
    /// diverted, unaccounted, duplicated, or counted under a licence that requires shipments
    /// without being on one (docs/check.md, "Shipments"). A shipment that does not verify is
    /// REJECTED with its code and makes the result not compliant.
    #[arg(long, value_name = "S.jws")]
    pub shipment: Vec<PathBuf>,

    /// A shipped rule set's id or the path of a rule-set TOML file; repeat to evaluate the
    /// same evidence under several (scenarios, side by side). Default: the rule sets the
    /// accepted licences name, or us-eccn-3a090 when none is accepted.
    #[arg(long, value_name = "ID|FILE")]
    pub rule_set: Vec<String>,

    /// A what-if change, evaluated beside the baseline without editing a file; repeat for
    /// several at once (at most 32).
    ///
    /// Three forms:
    ///
    ///   CC=GROUP                move country CC into country group GROUP of every rule set
    ///                           evaluated: --scenario FR=tier_2 (under
    ///                           --rule-set us-ai-diffusion-2025: France in Tier 2, with its
    ///                           national allocation shared by every licence to France)
    ///   rule-set=ID|FILE        evaluate under this rule set instead (a shipped id or a rule-set
    ///                           file): --scenario rule-set=us-gain-ai-act-s3150 (what if the
    ///                           GAIN AI bill became law)
    ///   licence:ID:KEY=VALUE    change one cap of licence ID; KEY is max_devices,
    ///                           max_aggregate_tpp or max_tpp_per_device:
    ///                           --scenario licence:LIC-1:max_aggregate_tpp=500000
    ///
    /// The same evidence is evaluated at the same --at under the changed rule sets and
    /// licences (copies in memory, marked MODIFIED in the posture), and the report adds a
    /// WHAT IF section: per licence and per country, baseline against scenario side by side,
    /// and the devices that change class (JSON: `scenario`). The scenario is hypothetical:
    /// the exit code is the baseline's. A change that cannot be applied (malformed, an
    /// unknown licence or country group) exits 2 with the reason.
    #[arg(long, value_name = "CHANGE", verbatim_doc_comment)]
    pub scenario: Vec<String>,

    /// The challenge the attestations must answer (lower-case hex, 32 to 37 bytes); an
    /// attestation with another `eat_nonce` is rejected (nonce_mismatch). Default: not
    /// checked.
    #[arg(long, value_name = "HEX", value_parser = parse_nonce)]
    pub nonce: Option<Nonce>,

    /// The instant to check at: RFC 3339 with an offset (2027-06-01T00:00:00Z) or Unix
    /// seconds (default: now). Certificates, licence validity and attestation age are all
    /// judged at it; with a fixed --at the output is the same byte for byte.
    #[arg(long, value_name = "RFC3339|UNIX", allow_negative_numbers = true,
          value_parser = parse_at)]
    pub at: Option<i64>,

    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,

    /// Also write the result as an EAR JWT (draft-ietf-rats-ear) to this file (mode 0644,
    /// replaced if it exists).
    #[arg(long, value_name = "FILE")]
    pub ear: Option<PathBuf>,

    /// The verifier's result-signing key (PKCS#8 PEM) for --ear. Default:
    /// verifier-result.key in the trust file's folder (`pki init-verifier` writes it there).
    #[arg(long, value_name = "KEY.pem", requires = "ear")]
    pub ear_key: Option<PathBuf>,

    /// Attestation files (compact JWS, from `tppguard-agent attest`).
    #[arg(value_name = "ATTESTATION", required = true)]
    pub attestations: Vec<PathBuf>,
}

/// Flags of `licence`.
#[derive(Debug, Args)]
pub struct LicenceArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LicenceCommand,
}

/// `licence` subcommands.
#[derive(Debug, Subcommand)]
pub enum LicenceCommand {
    /// Validate a licence TOML (format: examples/README.md) and sign it as a JWS with the
    /// licence-signing key of the licence authority's folder.
    ///
    /// The JWS has `typ` tppguard-licence+jwt, the key's algorithm as `alg`, and the signer's
    /// chain (DIR/licence-signer-chain.pem, leaf first) as `x5c`. The output (mode 0644) is
    /// replaced if it exists.
    #[command(after_help = EXIT_CODES)]
    Sign(LicenceSignArgs),

    /// Verify a signed licence against the licence-authority roots pinned in trust.toml and
    /// show what it grants, and whether it is in force at --at.
    ///
    /// Exit code 0: verified and in force; 1: verified but expired or not yet valid; 2: it
    /// cannot be verified (bad signature, a signer outside the licence authority, an
    /// unreadable file), with the reason code in the message.
    #[command(after_help = EXIT_CODES)]
    Show(LicenceShowArgs),
    // Lifecycle (issue 12): `licence revoke`.
    /// Sign a revocation of licence --licence with the licence-signing key of a `pki init`
    /// folder: a compact JWS (`typ` tppguard-licence-revocation+jwt, `x5c` the signer's
    /// chain) carrying the licence id, the reason and the instant. Offline; submit it with
    /// POST /v1/licences/{id}/revocation or put it in the verifier's licences_dir as
    /// *.revocation.jws. A revocation is permanent.
    #[command(after_help = EXIT_CODES)]
    Revoke(LicenceRevokeArgs),
}

/// Flags of `licence revoke`.
#[derive(Debug, Args)]
pub struct LicenceRevokeArgs {
    /// The folder made by `pki init` (reads licence-signer.key and licence-signer-chain.pem).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// The id of the licence to revoke.
    #[arg(long, value_name = "ID")]
    pub licence: String,

    /// Why (one line, at most 1024 characters); shown in every verdict.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,

    /// The instant of revocation: RFC 3339 with an offset or Unix seconds (default: now).
    #[arg(long, value_name = "RFC3339|UNIX", value_parser = parse_at)]
    pub at: Option<i64>,

    /// Where to write the signed revocation (default: standard output).
    #[arg(long, value_name = "R.revocation.jws")]
    pub out: Option<PathBuf>,
}

/// Flags of `licence sign`.
#[derive(Debug, Args)]
pub struct LicenceSignArgs {
    /// The licence authority's folder (`pki init-licence-authority`, or
    /// DIR/licence-authority of `pki init`): reads licence-signer.key and
    /// licence-signer-chain.pem.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// Where to write the signed licence (compact JWS).
    #[arg(long, value_name = "L.jws")]
    pub out: PathBuf,

    /// Print what was signed as JSON.
    #[arg(long)]
    pub json: bool,

    /// The licence to sign, as TOML.
    #[arg(value_name = "LICENCE.toml")]
    pub licence: PathBuf,
}

/// Flags of `licence show`.
#[derive(Debug, Args)]
pub struct LicenceShowArgs {
    /// The trust file (written by `pki init-verifier`).
    #[arg(long, value_name = "TRUST.toml")]
    pub trust: PathBuf,

    /// The instant to check at: RFC 3339 with an offset (2027-06-01T00:00:00Z) or Unix
    /// seconds (default: now). The signer's certificates are checked at it too.
    #[arg(long, value_name = "RFC3339|UNIX", allow_negative_numbers = true,
          value_parser = parse_at)]
    pub at: Option<i64>,

    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,

    /// The signed licence (compact JWS).
    #[arg(value_name = "L.jws")]
    pub licence: PathBuf,
}

// Shipments (issue 15): `shipment sign|show`.
/// Flags of `shipment`.
#[derive(Debug, Args)]
pub struct ShipmentArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ShipmentCommand,
}

/// `shipment` subcommands.
#[derive(Debug, Subcommand)]
pub enum ShipmentCommand {
    /// Validate a shipment record (TOML; format: examples/README.md, example:
    /// examples/shipment.toml) and sign it as a JWS with the shipment-signing key of the GPU
    /// vendor's folder.
    ///
    /// A shipment names the licence the GPUs ship under, the delivery site and country, the
    /// delivery date, and each GPU (its UUID, board serial or hardware id; 1 to 4096). The
    /// JWS has `typ` tppguard-shipment+jwt, the key's algorithm as `alg`, and the signer's
    /// chain (DIR/shipment-signer-chain.pem, leaf first) as `x5c`; a verifier accepts it only
    /// under the vendor's CA pinned in trust.toml's [vendor] roots. The output (mode 0644) is
    /// replaced if it exists.
    ///
    /// Example:
    ///
    ///   tppguard-verifier pki init-vendor --dir vendor
    ///   tppguard-verifier shipment sign --dir vendor --out shipment.jws \
    ///     examples/shipment.toml
    #[command(after_help = EXIT_CODES, verbatim_doc_comment)]
    Sign(ShipmentSignArgs),

    /// Verify a signed shipment against the [vendor] roots pinned in trust.toml and show
    /// what it records.
    ///
    /// Only a signer chained to a pinned [vendor] root is accepted: a key of the licence
    /// authority, the operator (a node) or a GPU is refused with the chain code, whatever the
    /// shipment says. The vendor is the signer certificate's subject; the record's own
    /// `vendor` text is shown as written. Every field is printed escaped.
    ///
    /// Exit code 0: verified; 2: it cannot be verified, with the code in the message:
    /// shipment_bad_token (not a signed shipment), shipment_chain (the signer is not under a
    /// pinned [vendor] root, expired or revoked), shipment_signature (changed after signing),
    /// shipment_payload (the signed contents are invalid), each with the underlying reason.
    #[command(after_help = EXIT_CODES)]
    Show(ShipmentShowArgs),
}

/// Flags of `shipment sign`.
#[derive(Debug, Args)]
pub struct ShipmentSignArgs {
    /// The GPU vendor's folder (`pki init-vendor`, or DIR/vendor of `pki init`): reads
    /// shipment-signer.key and shipment-signer-chain.pem.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// Where to write the signed shipment (compact JWS).
    #[arg(long, value_name = "S.jws")]
    pub out: PathBuf,

    /// Print what was signed as JSON.
    #[arg(long)]
    pub json: bool,

    /// The shipment to sign, as TOML.
    #[arg(value_name = "SHIPMENT.toml")]
    pub shipment: PathBuf,
}

/// Flags of `shipment show`.
#[derive(Debug, Args)]
pub struct ShipmentShowArgs {
    /// The trust file (written by `pki init-verifier`; its [vendor] roots verify shipments).
    #[arg(long, value_name = "TRUST.toml")]
    pub trust: PathBuf,

    /// The instant to check the signer's certificates at: RFC 3339 with an offset or Unix
    /// seconds (default: now).
    #[arg(long, value_name = "RFC3339|UNIX", allow_negative_numbers = true,
          value_parser = parse_at)]
    pub at: Option<i64>,

    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,

    /// The signed shipment (compact JWS).
    #[arg(value_name = "S.jws")]
    pub shipment: PathBuf,
}

/// Flags of `pki`.
#[derive(Debug, Args)]
pub struct PkiArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PkiCommand,
}

/// `pki` subcommands.
#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// The one-machine demo: every party's material, each in its own folder under DIR
    /// (DIR/operator, DIR/licence-authority, DIR/verifier), as init-operator,
    /// init-licence-authority and init-verifier make them.
    ///
    /// In production each party runs its own command on its own machine and hands over only
    /// public certificates (docs/pki.md). Roots are ECDSA P-384 (ten years, CA:true pathlen 0,
    /// keyCertSign and cRLSign); leaves are Ed25519. Private keys (*.key) are PKCS#8 PEM
    /// created with mode 0600, folders 0700. Refuses to overwrite any existing file.
    #[command(after_help = EXIT_CODES)]
    Init(PkiInitArgs),

    /// The operator's folder: the operator CA (operator-ca.pem, operator-ca.key), which issues
    /// node certificates (`pki issue-node --dir DIR`). Hand operator-ca.pem to the verifier.
    #[command(after_help = EXIT_CODES)]
    InitOperator(PkiInitArgs),

    /// The licence authority's folder (vendor, regulator or exporter): the licence CA
    /// (licence-ca.pem, licence-ca.key) and the licence-signing key and chain
    /// (licence-signer.key, licence-signer-chain.pem) that `licence sign --dir DIR` uses.
    /// Hand licence-ca.pem to the verifier.
    #[command(after_help = EXIT_CODES)]
    InitLicenceAuthority(PkiInitArgs),

    /// The GPU vendor's folder: the vendor CA (vendor-ca.pem, vendor-ca.key) and the
    /// shipment-signing key and chain (shipment-signer.key, shipment-signer-chain.pem) that
    /// `shipment sign --dir DIR` uses. Hand vendor-ca.pem to the verifier (`pki init-verifier
    /// --vendor-ca`), which pins it under `[vendor] roots`: it verifies shipment records and
    /// nothing else.
    #[command(after_help = EXIT_CODES)]
    InitVendor(PkiInitArgs),

    /// The verifier's folder: copies of the operator's, licence authority's and (with
    /// --vendor-ca) GPU vendor's CA certificates (public only), the result-signing key pair
    /// (verifier-result.key, verifier-result.pub.pem: hand the .pub.pem to the agents) and
    /// trust.toml naming them. `serve` finds verifier-result.key beside trust.toml.
    #[command(after_help = EXIT_CODES)]
    InitVerifier(PkiInitVerifierArgs),

    /// Issue a node certificate for a CSR (from `tppguard-agent init`) and write the chain:
    /// the leaf, then the operator CA.
    ///
    /// The CSR's signature must verify; only its subject and key are used (its subject
    /// alternative names are not copied: the leaf's only SAN is --site's). The subject must be
    /// non-empty printable text; the key must not be a weak Ed25519 key. The issuance record
    /// DIR/issued.jsonl keeps one key per subject (--replace rotates) and one subject per key.
    /// The leaf is CA:false with digitalSignature and EKU clientAuth plus tppguard's
    /// node-attestation purpose, and is checked as the verifier will check it before it is
    /// written. Prints the node id (SHA-256 of the key's SubjectPublicKeyInfo).
    #[command(after_help = EXIT_CODES)]
    IssueNode(IssueNodeArgs),

    /// Check a PEM certificate chain (leaf first) against the roots pinned in trust.toml, as
    /// the verifier checks attestation (x5c) and licence chains.
    #[command(after_help = EXIT_CODES)]
    VerifyChain(VerifyChainArgs),
}

/// Flags of `pki init`.
#[derive(Debug, Args)]
pub struct PkiInitArgs {
    /// The folder to create (mode 0700) or fill.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `pki init-verifier`.
#[derive(Debug, Args)]
pub struct PkiInitVerifierArgs {
    /// The folder to create (mode 0700) or fill.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// The operator CA's certificate (operator-ca.pem from `pki init-operator`).
    #[arg(long, value_name = "PEM")]
    pub operator_ca: PathBuf,

    /// The licence authority's CA certificate (licence-ca.pem from `pki
    /// init-licence-authority`).
    #[arg(long, value_name = "PEM")]
    pub licence_ca: PathBuf,

    /// The GPU vendor's CA certificate (vendor-ca.pem from `pki init-vendor`), pinned under
    /// `[vendor] roots` to verify shipment records; without it no shipment verifies.
    #[arg(long, value_name = "PEM")]
    pub vendor_ca: Option<PathBuf>,

    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `pki issue-node`.
#[derive(Debug, Args)]
pub struct IssueNodeArgs {
    /// The operator's folder (`pki init-operator`, or DIR/operator of `pki init`): reads
    /// operator-ca.pem and operator-ca.key, keeps issued.jsonl.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,

    /// The node's PEM certificate signing request (NODE/node.csr).
    #[arg(long, value_name = "FILE")]
    pub csr: PathBuf,

    /// Where to write the PEM chain (replaced if it exists).
    #[arg(long, value_name = "CHAIN.pem")]
    pub out: PathBuf,

    /// Days of validity, from now (cut back to the operator CA's own expiry).
    #[arg(long, value_name = "N", default_value_t = 365,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,

    /// The node's site (a licence site id): certified in the leaf as the SAN URI
    /// tag:tppguard.dev,2026:site/ID, the site the verifier uses for the node. Without it the
    /// node has no certified site and the verifier flags it.
    #[arg(long, value_name = "ID", value_parser = tppguard_proto::site::SiteId::parse)]
    pub site: Option<tppguard_proto::site::SiteId>,

    /// Rotate: issue for this subject although the issuance record (DIR/issued.jsonl) has it
    /// under another key. The rotation is recorded.
    #[arg(long)]
    pub replace: bool,

    /// Print the issued certificate's facts as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `pki verify-chain`.
#[derive(Debug, Args)]
pub struct VerifyChainArgs {
    /// The trust file (written by `pki init-verifier`; format in its comments).
    #[arg(long, value_name = "TRUST.toml")]
    pub trust: PathBuf,

    /// Check a licence-signer chain against the licence-authority roots (default: a node
    /// chain against the operator roots).
    #[arg(long)]
    pub licence_signer: bool,

    /// Validation time in Unix seconds (default: now).
    #[arg(long, value_name = "UNIX", allow_negative_numbers = true)]
    pub at: Option<i64>,

    /// Print the leaf's facts as JSON.
    #[arg(long)]
    pub json: bool,

    /// The PEM chain, leaf first.
    #[arg(value_name = "CHAIN.pem")]
    pub chain: PathBuf,
}

/// Flags of `classify`.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Take every figure from the spec table's row for this model (its model name, case
    /// insensitive, or its exact NVML name). See --list-models.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with_all = [
            "tops",
            "die_area",
            "not_datacenter",
            "dram_bandwidth",
            "interconnect_bandwidth",
        ]
    )]
    pub model: Option<String>,

    /// Print the spec table's models with their TPP and exit.
    #[arg(long, conflicts_with_all = ["model", "tops", "rule_set"])]
    pub list_models: bool,

    /// Dense (not sparse) peak rate of one precision, in TOPS or TFLOPS; repeat for several.
    /// PRECISION is one of FP64 FP32 TF32 FP16 BF16 FP8 INT8 INT4 FP4 (any case). TPP is the
    /// maximum over precisions of rate x bit length.
    #[arg(long, value_name = "PRECISION=TOPS", value_parser = parse_tops)]
    pub tops: Vec<(Precision, Tops)>,

    /// Applicable die area in mm²: every non-planar logic die of the package, summed.
    /// Without it, performance density is unknown.
    #[arg(long, value_name = "MM2", value_parser = parse_die_area)]
    pub die_area: Option<DieArea>,

    /// The part is not designed or marketed for datacenters (default: it is).
    #[arg(long)]
    pub not_datacenter: bool,

    /// Peak DRAM/HBM bandwidth in GB/s (10^9 bytes/s).
    #[arg(long, value_name = "GBS", value_parser = parse_bandwidth)]
    pub dram_bandwidth: Option<Bandwidth>,

    /// Total bidirectional chip-to-chip bandwidth in GB/s (NVLink, Infinity Fabric).
    #[arg(long, value_name = "GBS", value_parser = parse_bandwidth)]
    pub interconnect_bandwidth: Option<Bandwidth>,

    /// A shipped rule set's id or the path of a rule-set TOML file (format: rules/README.md);
    /// repeat for several. Default: every shipped rule set.
    #[arg(long, value_name = "ID|FILE")]
    pub rule_set: Vec<String>,

    /// Also say whether the item needs a licence to this destination country (ISO 3166-1
    /// alpha-2: DE, GB, CN), under each rule set's licensing rules (rules/README.md).
    #[arg(long, value_name = "CC", value_parser = parse_country)]
    pub destination: Option<tppguard_proto::licence::CountryCode>,

    /// Where the party (the licensee) is headquartered; default: the destination. The
    /// headquarters test (15 CFR 742.6(a)(6)(iii)(A)) turns on it. Needs --destination.
    #[arg(long, value_name = "CC", value_parser = parse_country, requires = "destination")]
    pub headquarters: Option<tppguard_proto::licence::CountryCode>,

    /// Where the party's ultimate parent is headquartered; default: the headquarters. Needs
    /// --destination.
    #[arg(long, value_name = "CC", value_parser = parse_country, requires = "destination")]
    pub ultimate_parent: Option<tppguard_proto::licence::CountryCode>,

    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Parses an ISO 3166-1 alpha-2 country code (`DE`); the error says what is accepted.
fn parse_country(text: &str) -> Result<tppguard_proto::licence::CountryCode, String> {
    text.parse()
}

/// Parses `PRECISION=TOPS` (`FP8=1978.9`).
fn parse_tops(text: &str) -> Result<(Precision, Tops), String> {
    let (precision, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not PRECISION=TOPS (for example FP8=1978.9)"))?;
    let precision: Precision = precision.trim().parse().map_err(|e| format!("{e}"))?;
    let tops = value
        .trim()
        .parse()
        .map_err(|e| format!("{precision} rate: {e}"))?;
    Ok((precision, tops))
}

/// Parses `--at`: Unix seconds or RFC 3339.
fn parse_at(text: &str) -> Result<i64, String> {
    crate::licence::parse_at(text).map_err(|reason| format!("{text:?} {reason}"))
}

/// Parses `--nonce`: lower-case hex of 32 to 37 bytes.
fn parse_nonce(text: &str) -> Result<Nonce, String> {
    Nonce::parse(text).map_err(|e| format!("{text:?}: {e}"))
}

fn parse_die_area(text: &str) -> Result<DieArea, String> {
    text.parse().map_err(|e| format!("die area in mm²: {e}"))
}

fn parse_bandwidth(text: &str) -> Result<Bandwidth, String> {
    text.parse().map_err(|e| format!("bandwidth in GB/s: {e}"))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser, error::ErrorKind};

    use super::*;

    fn classify(args: &[&str]) -> Result<ClassifyArgs, clap::Error> {
        let argv = ["tppguard-verifier", "classify"].iter().chain(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Classify(args) => args,
            other => panic!("not classify: {other:?}"),
        })
    }

    #[test]
    fn command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn tops_is_repeatable_and_exact() {
        let args = classify(&["--tops", "fp8=1978.9", "--tops", "FP16=989.4"]).unwrap();
        assert_eq!(
            args.tops,
            [
                (Precision::Fp8, "1978.9".parse().unwrap()),
                (Precision::Fp16, "989.4".parse().unwrap())
            ]
        );
    }

    #[test]
    fn tops_rejects_bad_values() {
        for bad in ["FP8", "FP7=1", "FP8=-1", "FP8=1e3", "FP8=0.00001"] {
            let e = classify(&["--tops", bad]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{bad}");
        }
        let e = classify(&["--tops", "FP7=1"]).unwrap_err().to_string();
        assert!(e.contains("unknown precision \"FP7\""), "{e}");
    }

    #[test]
    fn die_area_and_bandwidths() {
        let args = classify(&[
            "--die-area",
            "814",
            "--dram-bandwidth",
            "3350",
            "--interconnect-bandwidth",
            "900",
            "--not-datacenter",
        ])
        .unwrap();
        assert_eq!(args.die_area, Some("814".parse().unwrap()));
        assert_eq!(args.dram_bandwidth, Some("3350".parse().unwrap()));
        assert_eq!(args.interconnect_bandwidth, Some("900".parse().unwrap()));
        assert!(args.not_datacenter);
        assert!(classify(&["--die-area", "0"]).is_err());
        assert!(classify(&["--dram-bandwidth", "fast"]).is_err());
    }

    #[test]
    fn model_conflicts_with_raw_figures() {
        let e = classify(&["--model", "H100 SXM5 80GB", "--tops", "FP8=1"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        let e = classify(&["--model", "H20", "--not-datacenter"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn rule_set_and_json() {
        let args = classify(&[
            "--rule-set",
            "us-eccn-3a090",
            "--rule-set",
            "x.toml",
            "--json",
        ])
        .unwrap();
        assert_eq!(args.rule_set, ["us-eccn-3a090", "x.toml"]);
        assert!(args.json);
        assert!(classify(&["--list-models"]).unwrap().list_models);
    }

    fn pki(args: &[&str]) -> Result<PkiCommand, clap::Error> {
        let argv = ["tppguard-verifier", "pki"].iter().chain(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Pki(p) => p.command,
            other => panic!("not pki: {other:?}"),
        })
    }

    #[test]
    fn pki_init_takes_dir_and_json() {
        let PkiCommand::Init(a) = pki(&["init", "--dir", "p", "--json"]).unwrap() else {
            panic!("not init")
        };
        assert_eq!(a.dir, PathBuf::from("p"));
        assert!(a.json);
        assert!(pki(&["init"]).is_err(), "--dir is required");
        // One folder per party.
        assert!(matches!(
            pki(&["init-operator", "--dir", "o"]),
            Ok(PkiCommand::InitOperator(_))
        ));
        assert!(matches!(
            pki(&["init-licence-authority", "--dir", "l"]),
            Ok(PkiCommand::InitLicenceAuthority(_))
        ));
        let PkiCommand::InitVerifier(a) = pki(&[
            "init-verifier",
            "--dir",
            "v",
            "--operator-ca",
            "o.pem",
            "--licence-ca",
            "l.pem",
        ])
        .unwrap() else {
            panic!("not init-verifier")
        };
        assert_eq!(a.operator_ca, PathBuf::from("o.pem"));
        assert_eq!(a.licence_ca, PathBuf::from("l.pem"));
        assert!(pki(&["init-verifier", "--dir", "v", "--licence-ca", "l.pem"]).is_err());
    }

    #[test]
    fn issue_node_days_default_and_range() {
        let PkiCommand::IssueNode(a) = pki(&[
            "issue-node",
            "--dir",
            "p",
            "--csr",
            "n.csr",
            "--out",
            "c.pem",
        ])
        .unwrap() else {
            panic!("not issue-node")
        };
        assert_eq!(a.days, 365);
        assert_eq!(
            (a.csr.to_str(), a.out.to_str()),
            (Some("n.csr"), Some("c.pem"))
        );
        for bad in ["0", "3651", "-1", "x"] {
            let args = [
                "issue-node",
                "--dir",
                "p",
                "--csr",
                "n",
                "--out",
                "c",
                "--days",
                bad,
            ];
            assert!(pki(&args).is_err(), "--days {bad}");
        }
        assert_eq!(a.site, None);
        assert!(!a.replace);
        let PkiCommand::IssueNode(a) = pki(&[
            "issue-node",
            "--dir",
            "p",
            "--csr",
            "n",
            "--out",
            "c",
            "--site",
            "fra-1",
            "--replace",
        ])
        .unwrap() else {
            panic!("not issue-node")
        };
        assert_eq!(a.site.as_ref().map(|s| s.as_str()), Some("fra-1"));
        assert!(a.replace);
        for bad in ["", "fra 1", "fr\u{1b}a", &"x".repeat(65)] {
            let args = [
                "issue-node",
                "--dir",
                "p",
                "--csr",
                "n",
                "--out",
                "c",
                "--site",
                bad,
            ];
            assert!(pki(&args).is_err(), "--site {bad:?}");
        }
    }

    #[test]
    fn verify_chain_flags() {
        let PkiCommand::VerifyChain(a) = pki(&[
            "verify-chain",
            "--trust",
            "t.toml",
            "--licence-signer",
            "--at",
            "1700000000",
            "--json",
            "c.pem",
        ])
        .unwrap() else {
            panic!("not verify-chain")
        };
        assert_eq!(a.at, Some(1_700_000_000));
        assert!(a.licence_signer && a.json);
        assert_eq!(a.chain, PathBuf::from("c.pem"));
        assert!(
            pki(&["verify-chain", "c.pem"]).is_err(),
            "--trust is required"
        );
    }

    fn licence(args: &[&str]) -> Result<LicenceCommand, clap::Error> {
        let argv = ["tppguard-verifier", "licence"].iter().chain(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Licence(l) => l.command,
            other => panic!("not licence: {other:?}"),
        })
    }

    #[test]
    fn licence_sign_flags() {
        let LicenceCommand::Sign(a) =
            licence(&["sign", "--dir", "p", "l.toml", "--out", "l.jws", "--json"]).unwrap()
        else {
            panic!("not sign")
        };
        assert_eq!(
            (a.dir, a.licence, a.out, a.json),
            ("p".into(), "l.toml".into(), "l.jws".into(), true)
        );
        assert!(
            licence(&["sign", "--dir", "p", "l.toml"]).is_err(),
            "--out is required"
        );
    }

    #[test]
    fn licence_show_at_takes_rfc3339_or_unix() {
        let at = |value: &str| {
            licence(&["show", "--trust", "t.toml", "--at", value, "l.jws"]).map(|c| match c {
                LicenceCommand::Show(a) => a.at,
                other => panic!("not show: {other:?}"),
            })
        };
        assert_eq!(at("1700000000").unwrap(), Some(1_700_000_000));
        assert_eq!(at("2028-01-01T00:00:00Z").unwrap(), Some(1_830_297_600));
        assert_eq!(
            at("2028-01-01T01:00:00+01:00").unwrap(),
            Some(1_830_297_600)
        );
        for bad in [
            "2028-01-01",
            "2028-01-01T00:00:00",
            "2028-02-30T00:00:00Z",
            "soon",
        ] {
            let e = at(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{bad}");
        }
        let LicenceCommand::Show(a) = licence(&["show", "--trust", "t", "--json", "l"]).unwrap()
        else {
            panic!("not show")
        };
        assert_eq!((a.at, a.json), (None, true));
        assert!(licence(&["show", "l.jws"]).is_err(), "--trust is required");
    }

    fn check(args: &[&str]) -> Result<CheckArgs, clap::Error> {
        let argv = ["tppguard-verifier", "check"].iter().chain(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Check(a) => a,
            other => panic!("not check: {other:?}"),
        })
    }

    #[test]
    fn check_flags() {
        let nonce = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let a = check(&[
            "--trust",
            "t.toml",
            "--licence",
            "a.jws",
            "--licence",
            "b.jws",
            "--rule-set",
            "us-eccn-3a090",
            "--rule-set",
            "us-gain-ai-act-s3150",
            "--nonce",
            nonce,
            "--at",
            "2026-06-01T00:00:00Z",
            "--json",
            "--ear",
            "r.jwt",
            "--ear-key",
            "k.pem",
            "n1.jws",
            "n2.jws",
        ])
        .unwrap();
        assert_eq!(a.licence, [PathBuf::from("a.jws"), PathBuf::from("b.jws")]);
        assert_eq!(a.rule_set, ["us-eccn-3a090", "us-gain-ai-act-s3150"]);
        assert_eq!(a.nonce.as_ref().map(Nonce::as_str), Some(nonce));
        assert_eq!(a.at, Some(1_780_272_000));
        assert!(a.json);
        assert_eq!(a.ear, Some(PathBuf::from("r.jwt")));
        assert_eq!(a.ear_key, Some(PathBuf::from("k.pem")));
        assert_eq!(a.attestations.len(), 2);
    }

    #[test]
    fn check_requires_trust_licence_and_attestations() {
        assert!(check(&["--licence", "l", "a"]).is_err(), "--trust");
        assert!(check(&["--trust", "t", "a"]).is_err(), "--licence");
        assert!(
            check(&["--trust", "t", "--licence", "l"]).is_err(),
            "ATTESTATION"
        );
        let e = check(&["--trust", "t", "--licence", "l", "--ear-key", "k", "a"]).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::MissingRequiredArgument,
            "--ear-key needs --ear"
        );
        let e = check(&["--trust", "t", "--licence", "l", "--nonce", "abc", "a"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn token_commands_parse_and_check_their_flags() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["tppguard-verifier", "token"].iter().chain(args)).map(|c| match c
                .command
            {
                Command::Token(t) => t.command,
                other => panic!("not token: {other:?}"),
            })
        };
        let TokenCommand::Issue(a) = parse(&[
            "issue",
            "--config",
            "v.toml",
            "--role",
            "vendor",
            "--name",
            "acme",
            "--licence",
            "L1",
            "--licence",
            "L2",
            "--expires-in-days",
            "30",
            "--json",
        ])
        .unwrap() else {
            panic!("not issue");
        };
        assert_eq!(a.role, crate::serve::auth::Role::Vendor);
        assert_eq!(a.licence, ["L1", "L2"]);
        assert_eq!((a.expires_in_days, a.json, a.out), (Some(30), true, None));
        for bad in [
            &["issue", "--config", "v", "--role", "root", "--name", "n"][..],
            &[
                "issue",
                "--config",
                "v",
                "--role",
                "node",
                "--name",
                "n",
                "--expires-in-days",
                "0",
            ],
            &["issue", "--config", "v", "--role", "node"],
            &["revoke", "--config", "v"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let TokenCommand::Revoke { id, .. } =
            parse(&["revoke", "--config", "v", "0123456789abcdef"]).unwrap()
        else {
            panic!("not revoke");
        };
        assert_eq!(id, "0123456789abcdef");
    }

    #[test]
    fn serve_takes_a_config() {
        let cli =
            Cli::try_parse_from(["tppguard-verifier", "serve", "--config", "v.toml"]).unwrap();
        let Command::Serve(a) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(a.config, PathBuf::from("v.toml"));
        assert!(Cli::try_parse_from(["tppguard-verifier", "serve"]).is_err());
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
    }
}
