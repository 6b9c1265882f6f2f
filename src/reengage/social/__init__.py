"""Messaging apps as channels: WhatsApp (the Business Cloud API), Facebook Messenger and
Instagram messages. Conversations, the 24-hour customer service window and support routing
are `conversations`; the clients are `whatsapp` and `messenger`; the signed webhook that
brings messages in is `reengage.web.social_hooks`."""
