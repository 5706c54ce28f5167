//! Identities from client certificates. The TLS layer has already verified the chain; this
//! only reads names out of the leaf so rules can say `cert:IDENTITY`.

use serde::{Deserialize, Serialize};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// Which part of the certificate is the identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentitySource {
    /// The subject's common name.
    Cn,
    /// The subject's (first) organization.
    O,
    /// The first URI SAN (e.g. a SPIFFE ID), else the first DNS SAN, else the first email SAN.
    San,
}

/// Names read from a certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertIdentity {
    /// Subject CN, if present.
    pub common_name: Option<String>,
    /// Subject O values, in order.
    pub organizations: Vec<String>,
    /// DNS subject alternative names.
    pub dns_sans: Vec<String>,
    /// URI subject alternative names.
    pub uri_sans: Vec<String>,
    /// Email (RFC 822) subject alternative names.
    pub email_sans: Vec<String>,
}

/// Why a certificate's names could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Not a DER X.509 certificate (or bytes after it).
    #[error("client certificate is not a valid DER X.509 certificate")]
    Malformed,
    /// More than one CN: which one is "the" name would be a guess an attacker could steer.
    #[error("client certificate has {0} common names; exactly one is expected")]
    MultipleCommonNames(usize),
    /// A subject name that is not a readable string.
    #[error("client certificate subject {0} is not a readable string")]
    UnreadableName(&'static str),
    /// A malformed subject-alternative-name extension.
    #[error("client certificate has an invalid subject alternative name extension")]
    BadSan,
}

impl CertIdentity {
    /// Reads the names from a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertIdentity, CertError> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|_| CertError::Malformed)?;
        if !rest.is_empty() {
            return Err(CertError::Malformed);
        }
        let subject = cert.subject();
        let cns = subject
            .iter_common_name()
            .map(|a| a.as_str().map(str::to_owned))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| CertError::UnreadableName("CN"))?;
        if cns.len() > 1 {
            return Err(CertError::MultipleCommonNames(cns.len()));
        }
        let organizations = subject
            .iter_organization()
            .map(|a| a.as_str().map(str::to_owned))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| CertError::UnreadableName("O"))?;
        let mut id = CertIdentity {
            common_name: cns.into_iter().next(),
            organizations,
            ..CertIdentity::default()
        };
        let san = cert
            .subject_alternative_name()
            .map_err(|_| CertError::BadSan)?;
        for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(s) => id.dns_sans.push((*s).to_owned()),
                GeneralName::URI(s) => id.uri_sans.push((*s).to_owned()),
                GeneralName::RFC822Name(s) => id.email_sans.push((*s).to_owned()),
                // IP addresses, directory names and others are not identities for rules.
                _ => {}
            }
        }
        Ok(id)
    }

    /// The identity `cert:` rules match, taken from `from`; `None` when that part is absent.
    pub fn identity(&self, from: IdentitySource) -> Option<String> {
        match from {
            IdentitySource::Cn => self.common_name.clone(),
            IdentitySource::O => self.organizations.first().cloned(),
            IdentitySource::San => self
                .uri_sans
                .first()
                .or(self.dns_sans.first())
                .or(self.email_sans.first())
                .cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn make(cn: &[&str], orgs: &[&str], sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        // rcgen's default subject has a CN of its own.
        params.distinguished_name = DistinguishedName::new();
        for (i, c) in cn.iter().enumerate() {
            // rcgen keeps one value per attribute type; the CN's OID spelled as a custom type
            // is how a second CN gets into the subject.
            let kind = match i {
                0 => DnType::CommonName,
                _ => DnType::CustomDnType(vec![2, 5, 4, 3]),
            };
            params.distinguished_name.push(kind, *c);
        }
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn ia5(s: &str) -> rcgen::Ia5String {
        s.try_into().unwrap()
    }

    #[test]
    fn reads_subject_and_sans() {
        let der = make(
            &["builder"],
            &["Corp CI"],
            vec![
                SanType::DnsName(ia5("builder.ci.example")),
                SanType::URI(ia5("spiffe://corp/ci/builder")),
                SanType::Rfc822Name(ia5("ci@corp.example")),
                SanType::IpAddress("10.0.0.1".parse().unwrap()),
            ],
        );
        let id = CertIdentity::from_der(&der).unwrap();
        assert_eq!(id.common_name.as_deref(), Some("builder"));
        assert_eq!(id.organizations, vec!["Corp CI"]);
        assert_eq!(id.dns_sans, vec!["builder.ci.example"]);
        assert_eq!(id.uri_sans, vec!["spiffe://corp/ci/builder"]);
        assert_eq!(id.email_sans, vec!["ci@corp.example"]);
        assert_eq!(id.identity(IdentitySource::Cn).as_deref(), Some("builder"));
        assert_eq!(id.identity(IdentitySource::O).as_deref(), Some("Corp CI"));
        assert_eq!(
            id.identity(IdentitySource::San).as_deref(),
            Some("spiffe://corp/ci/builder")
        );
    }

    #[test]
    fn san_falls_back_dns_then_email_and_absent_parts_are_none() {
        let dns = make(&[], &[], vec![SanType::DnsName(ia5("a.example"))]);
        let id = CertIdentity::from_der(&dns).unwrap();
        assert_eq!(
            id.identity(IdentitySource::San).as_deref(),
            Some("a.example")
        );
        assert_eq!(id.identity(IdentitySource::Cn), None);
        assert_eq!(id.identity(IdentitySource::O), None);
        let mail = make(&["x"], &[], vec![SanType::Rfc822Name(ia5("m@example"))]);
        let id = CertIdentity::from_der(&mail).unwrap();
        assert_eq!(
            id.identity(IdentitySource::San).as_deref(),
            Some("m@example")
        );
        let none = CertIdentity::from_der(&make(&["x"], &[], vec![])).unwrap();
        assert_eq!(none.identity(IdentitySource::San), None);
    }

    #[test]
    fn refuses_garbage_trailing_bytes_and_two_cns() {
        assert_eq!(CertIdentity::from_der(b""), Err(CertError::Malformed));
        assert_eq!(
            CertIdentity::from_der(b"not a cert"),
            Err(CertError::Malformed)
        );
        let mut der = make(&["x"], &[], vec![]);
        der.push(0);
        assert_eq!(CertIdentity::from_der(&der), Err(CertError::Malformed));
        der.truncate(der.len() - 10);
        assert_eq!(CertIdentity::from_der(&der), Err(CertError::Malformed));
        let two = make(&["alice", "admin"], &[], vec![]);
        assert_eq!(
            CertIdentity::from_der(&two),
            Err(CertError::MultipleCommonNames(2))
        );
    }

    #[test]
    fn identity_source_deserialises_lowercase() {
        #[derive(Deserialize)]
        struct C {
            from: IdentitySource,
        }
        let c: C = toml::from_str("from = \"san\"").unwrap();
        assert_eq!(c.from, IdentitySource::San);
        assert!(toml::from_str::<C>("from = \"subject\"").is_err());
    }
}
