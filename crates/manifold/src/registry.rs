//! The destination types compiled into this binary.

use manifold_core::Registry;

pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(manifold_webhook::WebhookFactory);
    r.register(manifold_sql::SqlFactory);
    r.register(manifold_s3::S3Factory);
    r.register(manifold_sqs::SqsFactory);
    r.register(manifold_kafka::KafkaFactory);
    r.register(manifold_mongo::MongoFactory);
    r.register(manifold_supabase::SupabaseFactory);
    r.register(manifold_gcs::GcsFactory);
    r.register(manifold_azure_blob::AzureBlobFactory);
    #[cfg(feature = "firestore")]
    r.register(manifold_firestore::FirestoreFactory);
    r
}
