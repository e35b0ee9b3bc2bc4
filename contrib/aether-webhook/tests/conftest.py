from webhook_receiver import dead_port, receiver

__all__ = ["dead_port", "receiver"]
