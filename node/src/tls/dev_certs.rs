//! `rekor-node certs`: a development CA, node certificates and an operator certificate, for
//! people who have no PKI yet (a local cluster, a test, a first deployment).
//!
//! The CA is created once in the output directory and reused by later runs, so the command also
//! issues certificates for nodes added later, and renews (re-issues) existing ones. Every key is
//! ECDSA P-256 and written with mode 0600. Production clusters should use their own CA (e.g.
//! cert-manager); docs/operations.md, "Transport security", says what the certificates need.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::identity::{node_uri, operator_uri};

/// File names in the output directory.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";

pub fn node_cert(id: u64) -> String {
    format!("node-{id}.pem")
}
pub fn node_key(id: u64) -> String {
    format!("node-{id}-key.pem")
}
pub fn operator_cert(name: &str) -> String {
    format!("operator-{name}.pem")
}
pub fn operator_key(name: &str) -> String {
    format!("operator-{name}-key.pem")
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory for the CA and the certificates (created; an existing CA there is reused).
    #[arg(long, default_value = "rekor-certs")]
    pub dir: PathBuf,
    /// Node ids to issue certificates for, e.g. `1,2,3`.
    #[arg(long, value_delimiter = ',')]
    pub node_ids: Vec<u64>,
    /// Host names and IP addresses the node certificates are valid for (clients of the public
    /// listener check them; peers check the node id instead). Repeat or separate with commas.
    #[arg(
        long = "host",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    pub hosts: Vec<String>,
    /// Issue an operator certificate with this name (for `init`, `status`, `node`, `freeze`).
    #[arg(long)]
    pub operator: Option<String>,
    /// Validity of the node and operator certificates, in days.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// Validity of a new CA, in days.
    #[arg(long, default_value_t = 3650)]
    pub ca_days: u32,
}

pub fn run(args: CertsArgs) -> Result<()> {
    if args.node_ids.is_empty() && args.operator.is_none() {
        bail!("nothing to issue: give --node-ids and/or --operator");
    }
    if args.node_ids.contains(&0) {
        bail!("node ids start at 1");
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let ca = DevCa::open_or_create(&args.dir, args.ca_days)?;
    for id in &args.node_ids {
        ca.issue(
            &args.dir,
            &node_cert(*id),
            &node_key(*id),
            &format!("rekor-raft node {id}"),
            &args.hosts,
            &node_uri(*id),
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            args.days,
        )?;
        println!("node {id}: {}", args.dir.join(node_cert(*id)).display());
    }
    if let Some(name) = &args.operator {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            bail!("an operator name is letters, digits, '-', '_' and '.'");
        }
        ca.issue(
            &args.dir,
            &operator_cert(name),
            &operator_key(name),
            &format!("rekor-raft operator {name}"),
            &[],
            &operator_uri(name),
            &[ExtendedKeyUsagePurpose::ClientAuth],
            args.days,
        )?;
        println!(
            "operator {name}: {}",
            args.dir.join(operator_cert(name)).display()
        );
    }
    println!("CA: {}", args.dir.join(CA_CERT).display());
    Ok(())
}

struct DevCa {
    issuer: Issuer<'static, KeyPair>,
}

impl DevCa {
    fn open_or_create(dir: &Path, days: u32) -> Result<Self> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        if cert_path.exists() {
            let key = crate::secrets::read_private_file(&key_path, "CA private key")?;
            let key = KeyPair::from_pem(&key)
                .with_context(|| format!("parsing {}", key_path.display()))?;
            let cert = std::fs::read_to_string(&cert_path)
                .with_context(|| format!("reading {}", cert_path.display()))?;
            let issuer = Issuer::from_ca_cert_pem(&cert, key)
                .with_context(|| format!("parsing {}", cert_path.display()))?;
            return Ok(Self { issuer });
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "rekor-raft development CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, days);
        let cert = params.self_signed(&key)?;
        crate::secrets::write_private_file(&key_path, key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, cert.pem())
            .with_context(|| format!("writing {}", cert_path.display()))?;
        println!("created a development CA in {}", dir.display());
        Ok(Self {
            issuer: Issuer::new(params, key),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn issue(
        &self,
        dir: &Path,
        cert_name: &str,
        key_name: &str,
        common_name: &str,
        hosts: &[String],
        identity_uri: &str,
        usages: &[ExtendedKeyUsagePurpose],
        days: u32,
    ) -> Result<()> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(hosts.to_vec())
            .with_context(|| format!("host names {hosts:?}"))?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .subject_alt_names
            .push(SanType::URI(identity_uri.try_into()?));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages.to_vec();
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, days);
        let cert = params.signed_by(&key, &self.issuer)?;
        // The key first: a reloading node that sees a new certificate finds its key in place.
        crate::secrets::replace_private_file(&dir.join(key_name), key.serialize_pem().as_bytes())?;
        crate::secrets::replace_private_file(&dir.join(cert_name), cert.pem().as_bytes())?;
        Ok(())
    }
}

fn set_validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks that run a little behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
}
