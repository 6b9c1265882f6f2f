"""The ways reengage reaches a person: email, SMS, web push, ad audiences, webhooks."""
